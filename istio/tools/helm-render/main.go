// helm-render renders a Helm chart's templates the way `helm template` does, for the tests of
// istio/helm (no helm binary is packaged for Debian): Go's text/template with the sprig
// function library, which is Helm's template engine, plus the functions Helm itself adds
// (include, tpl, required, toYaml, fromYaml, lookup) and Helm's values defaulting
// (values.yaml, then each -f file merged over it). Schema validation is left to the caller.
//
//	helm-render CHART_DIR [-f VALUES.yaml]...
//
// Built by istio/tests with Debian's golang-go and golang-github-masterminds-sprig-dev.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	sprig "github.com/Masterminds/sprig/v3"
	yaml "gopkg.in/yaml.v3"
)

func readYAML(path string) (map[string]interface{}, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]interface{}{}
	if err := yaml.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}

// coalesce merges src over dst as Helm merges values files: maps deeply, anything else
// replaced, null deleting the key.
func coalesce(dst, src map[string]interface{}) map[string]interface{} {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
			continue
		}
		sm, sok := v.(map[string]interface{})
		dm, dok := dst[k].(map[string]interface{})
		if sok && dok {
			dst[k] = coalesce(dm, sm)
		} else {
			dst[k] = v
		}
	}
	return dst
}

func toYAML(v interface{}) string {
	data, err := yaml.Marshal(v)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(data), "\n")
}

func render(chart string, valueFiles []string) (string, error) {
	meta, err := readYAML(filepath.Join(chart, "Chart.yaml"))
	if err != nil {
		return "", err
	}
	values, err := readYAML(filepath.Join(chart, "values.yaml"))
	if err != nil {
		return "", err
	}
	for _, f := range valueFiles {
		user, err := readYAML(f)
		if err != nil {
			return "", err
		}
		values = coalesce(values, user)
	}
	name := fmt.Sprint(meta["name"])
	root := template.New(name).Option("missingkey=zero")
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = func(s string) map[string]interface{} {
		out := map[string]interface{}{}
		_ = yaml.Unmarshal([]byte(s), &out)
		return out
	}
	funcs["include"] = func(name string, data interface{}) (string, error) {
		var buf bytes.Buffer
		err := root.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = t.Execute(&buf, data)
		return buf.String(), err
	}
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil || v == "" {
			return nil, errors.New(msg)
		}
		return v, nil
	}
	funcs["lookup"] = func(...string) map[string]interface{} { return map[string]interface{}{} }
	root.Funcs(funcs)

	var names []string
	err = filepath.Walk(filepath.Join(chart, "templates"), func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		text, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(filepath.Dir(chart), path)
		if _, err := root.New(rel).Parse(string(text)); err != nil {
			return err
		}
		names = append(names, rel)
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(names)
	data := map[string]interface{}{
		"Values":  values,
		"Chart":   map[string]interface{}{"Name": meta["name"], "Version": meta["version"]},
		"Release": map[string]interface{}{"Name": "meshtriage", "Namespace": "istio-system", "Service": "Helm", "IsInstall": true},
	}
	var out strings.Builder
	for _, n := range names {
		if strings.HasPrefix(filepath.Base(n), "_") {
			continue
		}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, n, data); err != nil {
			return "", err
		}
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", n, strings.ReplaceAll(buf.String(), "<no value>", ""))
	}
	return out.String(), nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: helm-render CHART_DIR [-f VALUES.yaml]...")
		os.Exit(2)
	}
	var files []string
	for i := 2; i < len(os.Args); i++ {
		if os.Args[i] == "-f" && i+1 < len(os.Args) {
			files = append(files, os.Args[i+1])
			i++
		}
	}
	out, err := render(os.Args[1], files)
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
	fmt.Print(out)
}
