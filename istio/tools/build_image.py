#!/usr/bin/env python3
"""Builds the OCI image layout of the plugin without a container daemon, and checks one.

    make wasm                                          # cargo build, then wasm-opt
    python3 istio/tools/build_image.py --tag 0.1.0     # prints the manifest digest
    python3 istio/tools/build_image.py --verify target/istio/oci

The image is what `FROM scratch` + `COPY meshtriage.wasm /plugin.wasm` would build, in the form
istio-agent accepts for oci:// URLs (its "compat" variant): one OCI image manifest (not an
index), whose last layer is a gzipped tar holding plugin.wasm. Output is reproducible: the
same .wasm always gives the same manifest digest. Push it with skopeo, crane or oras (see
istio/README.md) and pin the printed digest: it is the manifest digest Istio checks, not the
sha256 of plugin.wasm. Standard library only.
"""

import argparse
import gzip
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
DEFAULT_WASM = REPO / "target" / "wasm32-wasip1" / "release" / "meshtriage.wasm"
DEFAULT_OUT = REPO / "target" / "istio" / "oci"

WASM_MAGIC = b"\0asm"
INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"  # gzip is required: plain tar is rejected
PLATFORM = {"architecture": "amd64", "os": "linux"}  # what istio-agent resolves indexes to


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(obj):
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def layer_tar(wasm):
    """A deterministic tar holding /plugin.wasm (mode 0644, owner 0, epoch mtime)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("plugin.wasm")
        info.size, info.mode, info.mtime = len(wasm), 0o644, 0
        tar.addfile(info, io.BytesIO(wasm))
    return buf.getvalue()


def gzip_bytes(data):
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", fileobj=buf, mode="wb", compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def build(wasm, out_dir, tag):
    """Writes the layout; returns the manifest digest."""
    if not wasm.startswith(WASM_MAGIC):
        raise ValueError("not a WebAssembly module (no \\0asm magic)")
    tar = layer_tar(wasm)
    layer = gzip_bytes(tar)
    config = canonical({**PLATFORM, "config": {}, "rootfs": {"type": "layers", "diff_ids": [digest(tar)]}})
    manifest = canonical(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": CONFIG, "digest": digest(config), "size": len(config)},
            "layers": [{"mediaType": LAYER, "digest": digest(layer), "size": len(layer)}],
        }
    )
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [
            {
                "mediaType": MANIFEST,
                "digest": digest(manifest),
                "size": len(manifest),
                "platform": PLATFORM,
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    out_dir = Path(out_dir)
    blobs = out_dir / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for old in blobs.iterdir():
        old.unlink()
    for blob in (layer, config, manifest):
        (blobs / digest(blob).removeprefix("sha256:")).write_bytes(blob)
    (out_dir / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}) + "\n")
    (out_dir / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    return digest(manifest)


class LayoutError(Exception):
    pass


def verify(out_dir):
    """Checks a layout as istio-agent would read the pushed image; returns {tag: digest}."""
    out_dir = Path(out_dir)

    def blob(desc):
        name = desc["digest"].removeprefix("sha256:")
        data = (out_dir / "blobs" / "sha256" / name).read_bytes()
        if digest(data) != desc["digest"] or len(data) != desc["size"]:
            raise LayoutError(f"blob {desc['digest']} does not match its digest or size")
        return data

    if json.loads((out_dir / "oci-layout").read_text()) != {"imageLayoutVersion": "1.0.0"}:
        raise LayoutError("oci-layout is not version 1.0.0")
    index = json.loads((out_dir / "index.json").read_text())
    if index.get("schemaVersion") != 2 or not index.get("manifests"):
        raise LayoutError("index.json has no manifests")
    tags = {}
    for desc in index["manifests"]:
        if desc.get("mediaType") != MANIFEST:
            raise LayoutError(f"{desc['digest']}: push an image manifest, not {desc.get('mediaType')}")
        manifest = json.loads(blob(desc))
        if manifest.get("mediaType") != MANIFEST or manifest.get("schemaVersion") != 2:
            raise LayoutError("manifest is not an OCI image manifest")
        if manifest["config"]["mediaType"] != CONFIG:
            raise LayoutError("config is not an OCI image config")
        config = json.loads(blob(manifest["config"]))
        if not manifest["layers"] or manifest["layers"][-1]["mediaType"] != LAYER:
            raise LayoutError(f"the last layer must be {LAYER}")
        layer = blob(manifest["layers"][-1])
        tar = gzip.decompress(layer)
        if config["rootfs"]["diff_ids"][-1] != digest(tar):
            raise LayoutError("config rootfs.diff_ids does not match the uncompressed layer")
        with tarfile.open(fileobj=io.BytesIO(tar)) as t:
            members = [m for m in t.getmembers() if m.isfile() and Path(m.name).name == "plugin.wasm"]
            if len(members) != 1:
                raise LayoutError("the last layer must hold exactly one plugin.wasm")
            f = t.extractfile(members[0])
            if f is None or not f.read(4) == WASM_MAGIC:
                raise LayoutError("plugin.wasm is not a WebAssembly module")
        tags[desc.get("annotations", {}).get("org.opencontainers.image.ref.name", "")] = desc["digest"]
    return tags


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wasm", type=Path, default=DEFAULT_WASM, help=f"plugin module (default {DEFAULT_WASM.relative_to(REPO)})")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"layout directory (default {DEFAULT_OUT.relative_to(REPO)})")
    ap.add_argument("--tag", default="dev", help="tag recorded in index.json (org.opencontainers.image.ref.name)")
    ap.add_argument("--verify", type=Path, metavar="DIR", help="only check an existing layout")
    args = ap.parse_args(argv)
    try:
        if args.verify:
            for tag, d in verify(args.verify).items():
                print(f"{tag} {d}")
            return 0
        d = build(args.wasm.read_bytes(), args.out, args.tag)
        verify(args.out)
    except (OSError, ValueError, LayoutError, KeyError) as e:
        print(f"build_image.py: {e}", file=sys.stderr)
        return 1
    print(f"build_image.py: wrote {args.out} ({args.tag}); manifest digest:", file=sys.stderr)
    print(d)
    return 0


if __name__ == "__main__":
    sys.exit(main())
