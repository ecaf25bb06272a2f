{{/* Labels on every object. */}}
{{- define "meshtriage.labels" -}}
app.kubernetes.io/name: meshtriage
app.kubernetes.io/part-of: meshtriage
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

{{/* The pinned oci:// URL; refuses to render without a manifest digest. */}}
{{- define "meshtriage.url" -}}
{{- $digest := required "image.digest is required (sha256:<manifest digest>)" .Values.image.digest -}}
{{- if not (regexMatch "^sha256:[a-f0-9]{64}$" $digest) -}}
{{- fail (printf "image.digest %q is not sha256:<64 lowercase hex>" $digest) -}}
{{- end -}}
oci://{{ .Values.image.repository }}@{{ $digest }}
{{- end }}

{{/*
One WasmPlugin. Arguments (dict): root (the chart context), name, namespace, rootId, type,
mode (SERVER or CLIENT), config (dict: pluginConfig, `direction` included), target (dict or
nil: selector / targetRefs).
*/}}
{{- define "meshtriage.wasmplugin" -}}
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata:
  name: {{ .name }}
  namespace: {{ .namespace }}
  labels:
    {{- include "meshtriage.labels" .root | nindent 4 }}
spec:
  {{- with .target }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
  url: {{ include "meshtriage.url" .root }}
  imagePullPolicy: IfNotPresent
  {{- with .root.Values.image.pullSecret }}
  imagePullSecret: {{ . }}
  {{- end }}
  pluginName: {{ .rootId }}
  type: {{ .type }}
  phase: AUTHN
  priority: 1000
  failStrategy: FAIL_OPEN
  match:
  - mode: {{ .mode }}
  pluginConfig:
    {{- toYaml .config | nindent 4 }}
{{- end }}

{{/* Telemetry switching the access log to the meshtriage-access-log provider. */}}
{{- /* One Telemetry per entry (Istio merges at most one selector-less object per namespace):
the access-log switch (`accessLog`) and/or the span tags (`tracingTags`: Telemetry formatter
custom tags, Istio 1.29+), as istio/tools/generate.py renders them (its TRACE_TAGS; a test
compares the two). The tags read the filter state the plugin writes for a failing request. */ -}}
{{- define "meshtriage.telemetry" -}}
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata:
  name: {{ .name }}
  namespace: {{ .namespace }}
  labels:
    {{- include "meshtriage.labels" .root | nindent 4 }}
spec:
  {{- with .target }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
  {{- if .root.Values.accessLog }}
  accessLogging:
  - providers:
    - name: meshtriage-access-log
  {{- end }}
  {{- if .root.Values.tracingTags }}
  tracing:
  - customTags:
      {{- range $tag, $key := dict "meshtriage.verdict" "meshtriage" "meshtriage.layer" "meshtriage.layer" "meshtriage.class" "meshtriage.class" "meshtriage.origin" "meshtriage.origin" }}
      {{ $tag }}:
        formatter:
          value: "%FILTER_STATE(wasm.{{ $key }}:PLAIN)%"
      {{- end }}
  {{- end }}
{{- end }}

{{- /* The Telemetry's name: the access log's when it has one, else the tracing one's. */ -}}
{{- define "meshtriage.telemetryName" -}}
{{- ternary "access-log" "tracing" (.Values.accessLog | default false) -}}
{{- end }}
