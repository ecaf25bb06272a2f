"""The OCI image istio-agent pulls: the layout build_image.py writes (digests, content,
reproducibility), and the real path of the image: `skopeo copy` into a local registry (Debian
`docker-registry`, on loopback, started and stopped here), pulled back by digest, the digest
equal to the one printed and the layer unpacking to a byte-identical module."""

import gzip
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import unittest
from pathlib import Path

import yaml

from support import ISTIO, need, stop, wait_port

sys.path.insert(0, str(ISTIO / "tools"))

import build_image  # noqa: E402


class TheOciLayoutIsWhatIstioPulls(unittest.TestCase):
    FAKE = b"\0asm\x01\0\0\0"  # the smallest valid module

    def wasm(self):
        real = build_image.DEFAULT_WASM
        return real.read_bytes() if real.is_file() else self.FAKE

    def test_layout_digests_and_content(self):
        wasm = self.wasm()
        with tempfile.TemporaryDirectory() as tmp:
            d = build_image.build(wasm, tmp, "0.1.0")
            root = Path(tmp)
            for blob in (root / "blobs" / "sha256").iterdir():
                self.assertEqual("sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest(), "sha256:" + blob.name)
            index = json.loads((root / "index.json").read_text())
            self.assertEqual(json.loads((root / "oci-layout").read_text()), {"imageLayoutVersion": "1.0.0"})
            [desc] = index["manifests"]
            self.assertEqual((desc["digest"], desc["annotations"]["org.opencontainers.image.ref.name"]), (d, "0.1.0"))
            self.assertEqual(desc["mediaType"], "application/vnd.oci.image.manifest.v1+json", "an index digest would not match")
            manifest = json.loads((root / "blobs" / "sha256" / d.removeprefix("sha256:")).read_bytes())
            [layer] = manifest["layers"]
            self.assertEqual(layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip")
            data = (root / "blobs" / "sha256" / layer["digest"].removeprefix("sha256:")).read_bytes()
            self.assertEqual(len(data), layer["size"])
            with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as t:
                self.assertEqual(t.getnames(), ["plugin.wasm"])
                self.assertEqual(t.extractfile("plugin.wasm").read(), wasm)
            self.assertEqual(build_image.verify(tmp), {"0.1.0": d})

    def test_the_digest_is_reproducible_and_follows_the_module(self):
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            self.assertEqual(build_image.build(self.FAKE, a, "x"), build_image.build(self.FAKE, b, "x"))
            self.assertNotEqual(build_image.build(self.FAKE, a, "x"), build_image.build(self.FAKE + b"\0", b, "x"))

    def test_verify_catches_damage_and_refuses_non_wasm(self):
        with tempfile.TemporaryDirectory() as tmp:
            build_image.build(self.FAKE, tmp, "x")
            blob = max((Path(tmp) / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
            blob.write_bytes(blob.read_bytes()[:-1] + b"\0")
            with self.assertRaises(build_image.LayoutError):
                build_image.verify(tmp)
            with self.assertRaises(ValueError):
                build_image.build(b"#!/bin/sh\n", tmp, "x")

    def test_cli_prints_only_the_digest(self):
        with tempfile.TemporaryDirectory() as tmp:
            wasm = Path(tmp) / "m.wasm"
            wasm.write_bytes(self.FAKE)
            r = subprocess.run([sys.executable, ISTIO / "tools" / "build_image.py", "--wasm", wasm, "--out", Path(tmp) / "oci"],
                               capture_output=True, text=True, check=True)
            self.assertRegex(r.stdout, r"^sha256:[a-f0-9]{64}\n$")


class SkopeoPushesItToARegistry(unittest.TestCase):
    FAKE = TheOciLayoutIsWhatIstioPulls.FAKE

    def test_the_pushed_digest_is_the_printed_one_and_the_module_comes_back(self):
        skopeo = need("skopeo", "skopeo")
        registry = need("docker-registry", "docker-registry")
        real = build_image.DEFAULT_WASM
        wasm = real.read_bytes() if real.is_file() else self.FAKE
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            (tmp / "m.wasm").write_bytes(wasm)
            # The README's commands: build_image.py prints the digest, skopeo writes its own.
            printed = subprocess.run([sys.executable, ISTIO / "tools" / "build_image.py", "--wasm", tmp / "m.wasm",
                                      "--out", tmp / "oci", "--tag", "0.1.0"], capture_output=True, text=True, check=True).stdout
            (tmp / "digest").write_text(printed)
            config = {"version": 0.1, "storage": {"filesystem": {"rootdirectory": str(tmp / "registry")}},
                      "http": {"addr": "127.0.0.1:0"}, "log": {"level": "error"}}
            (tmp / "registry.yml").write_text(yaml.safe_dump(config))
            reg = subprocess.Popen([registry, "serve", tmp / "registry.yml"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                host = f"127.0.0.1:{wait_port(reg, 'docker-registry')}"
                ref = f"docker://{host}/meshtriage/meshtriage:0.1.0"
                subprocess.run([skopeo, "copy", "--dest-tls-verify=false", "--digestfile", tmp / "pushed",
                                f"oci:{tmp / 'oci'}:0.1.0", ref], check=True, capture_output=True)
                # The README's comparison, run as written (skopeo writes no trailing newline,
                # build_image.py prints one: a plain `diff` of the two files fails).
                readme = (ISTIO / "README.md").read_text()
                [check] = re.findall(r"`(test \"\$\(cat target/istio/digest\)\" = [^`]*)`", readme)
                (tmp / "target" / "istio").mkdir(parents=True)
                for name in ("digest", "pushed"):
                    (tmp / "target" / "istio" / name).write_bytes((tmp / name).read_bytes())
                r = subprocess.run(["bash", "-c", check], cwd=tmp, capture_output=True, text=True)
                self.assertEqual((r.returncode, r.stdout.strip()), (0, "same"), (printed, (tmp / "pushed").read_text()))
                self.assertNotEqual((tmp / "digest").read_bytes(), (tmp / "pushed").read_bytes(), "the newline differs")
                # Pulled by digest, as the WasmPlugin url pins it (oci://host/repo@sha256:...).
                by_digest = f"docker://{host}/meshtriage/meshtriage@{printed.strip()}"
                inspect = json.loads(subprocess.run([skopeo, "inspect", "--tls-verify=false", "--raw", by_digest],
                                                    capture_output=True, text=True, check=True).stdout)
                self.assertEqual(inspect["mediaType"], build_image.MANIFEST, "a manifest, not an index")
                subprocess.run([skopeo, "copy", "--src-tls-verify=false", by_digest, f"dir:{tmp / 'pulled'}"],
                               check=True, capture_output=True)
                layer = (tmp / "pulled" / inspect["layers"][-1]["digest"].removeprefix("sha256:")).read_bytes()
                with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as t:
                    self.assertEqual(t.extractfile("plugin.wasm").read(), wasm)
            finally:
                stop(reg)
