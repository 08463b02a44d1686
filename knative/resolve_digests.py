#!/usr/bin/env python3
"""Resolve the chart's third-party image tags to digests at their registries.

values.yaml is the one place where the images and their digests are listed:
every `image: {repository, tag, digest}` block outside `functions` (those are
built and pinned by CD). This script asks each image's registry (the
Distribution API: an anonymous pull token, then a HEAD of the tag's manifest)
for the digest the tag points at now:

    python3 knative/resolve_digests.py            # print tag -> digest, compare with values.yaml
    python3 knative/resolve_digests.py --check    # exit 1 when a digest is missing or differs
    python3 knative/resolve_digests.py --write    # write the resolved digests into values.yaml

Run it where the registries are reachable (a CI runner, a workstation); with
no network it says which registry it could not reach and exits 2.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

import yaml

VALUES = pathlib.Path(__file__).resolve().parent / "exam-results" / "values.yaml"
MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Image:
    path: str  # values path, e.g. pgbouncer.image
    repository: str
    tag: str
    digest: str

    def _split(self) -> tuple[str, str]:
        first, _, rest = self.repository.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            return first, rest
        return "docker.io", self.repository

    @property
    def registry(self) -> str:
        return self._split()[0]

    @property
    def name(self) -> str:
        """The repository's name at its registry (Docker Hub's official images live under library/)."""
        registry, name = self._split()
        return f"library/{name}" if registry == "docker.io" and "/" not in name else name


def images(values: dict, path: str = "") -> list[Image]:
    """Every {repository, tag, digest} block, except the functions' own images."""
    found = []
    for key, value in values.items():
        where = f"{path}.{key}" if path else key
        if not isinstance(value, dict) or where == "functions" or where == "image":
            continue
        if {"repository", "tag", "digest"} <= set(value):
            found.append(Image(where, value["repository"], str(value["tag"]), value.get("digest") or ""))
        else:
            found.extend(images(value, where))
    return found


def registry_api(registry: str) -> tuple[str, str]:
    """(API base URL, token URL template) of a registry."""
    if registry == "docker.io":
        return "https://registry-1.docker.io", "https://auth.docker.io/token?service=registry.docker.io&scope=repository:{name}:pull"
    scheme = "http" if registry.split(":")[0] in ("127.0.0.1", "localhost") else "https"  # a local registry
    return f"{scheme}://{registry}", f"{scheme}://{registry}/token?scope=repository:{{name}}:pull"


def resolve(image: Image, timeout: float = 20) -> str:
    """The digest the image's tag points at (the index digest for multi-arch images)."""
    base, token_url = registry_api(image.registry)
    with urllib.request.urlopen(token_url.format(name=image.name), timeout=timeout) as response:
        token = json.load(response).get("token", "")
    request = urllib.request.Request(f"{base}/v2/{image.name}/manifests/{urllib.parse.quote(image.tag)}", method="HEAD",
                                     headers={"Accept": MANIFEST_TYPES, "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        digest = response.headers.get("Docker-Content-Digest", "")
    if not DIGEST.match(digest):
        raise ValueError(f"{image.repository}:{image.tag}: the registry answered no sha256 digest ({digest!r})")
    return digest


def write_digests(text: str, resolved: dict[str, str]) -> str:
    """values.yaml with the digest line of each resolved image path replaced (comments kept)."""
    lines = text.splitlines(keepends=True)
    for path, digest in resolved.items():
        stack: list[tuple[int, str]] = []
        done = False
        for i, line in enumerate(lines):
            match = re.match(r"^(\s*)([A-Za-z0-9_-]+):", line)
            if not match or line.lstrip().startswith("#"):
                continue
            indent, key = len(match.group(1)), match.group(2)
            while stack and stack[-1][0] >= indent:
                stack.pop()
            current = ".".join([k for _, k in stack] + [key])
            stack.append((indent, key))
            if current == f"{path}.digest":
                lines[i] = f'{match.group(1)}digest: "{digest}"\n'
                done = True
                break
        if not done:
            raise KeyError(f"{path}.digest is not in values.yaml")
    return "".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 when a digest is missing or stale")
    mode.add_argument("--write", action="store_true", help="write the resolved digests into values.yaml")
    parser.add_argument("--values", type=pathlib.Path, default=VALUES)
    args = parser.parse_args(argv)

    text = args.values.read_text()
    stale, resolved = 0, {}
    for image in images(yaml.safe_load(text)):
        try:
            digest = resolve(image)
        except (urllib.error.URLError, OSError) as err:
            print(f"cannot reach {image.registry} for {image.repository}:{image.tag}: {err}", file=sys.stderr)
            return 2
        resolved[image.path] = digest
        state = "ok" if image.digest == digest else ("missing" if not image.digest else f"differs (values.yaml: {image.digest})")
        stale += state != "ok"
        print(f"{image.path}: {image.repository}:{image.tag} -> {digest} {state}")
    if args.write:
        args.values.write_text(write_digests(text, resolved))
        print(f"wrote {len(resolved)} digest(s) to {args.values}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
