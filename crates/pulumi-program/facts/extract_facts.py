#!/usr/bin/env python3
"""Writes the provider facts the rehearsal double and the offline check play.

What pulumi-aws 7.51.1 refuses or replaces is decided by the Terraform AWS
provider it bridges: `ForceNew` (a change replaces the resource),
`ValidateFunc`/`ValidateDiagFunc` (`validation.StringInSlice`,
`enum.Validate[awstypes.X]()`, `validation.StringLenBetween`,
`validation.IntBetween`, `validation.StringMatch`). `sources.json` records,
per Pulumi resource type, those facts as the provider's schema source states
them (Terraform attribute names, the file and commit they were read from);
this script
  - resolves every `sdkEnum` (`enum.Validate[awstypes.Runtime]()` and the
    like) to its values, read from `types/enums.go` of the aws-sdk-go-v2
    service module pinned in sources.json (from the Go module cache; run
    `go mod download github.com/aws/aws-sdk-go-v2/service/<svc>@<version>`
    first),
  - renames Terraform attribute paths to Pulumi property paths
    (snake_case -> camelCase, plus pulumi-aws's renames such as
    `function_name` -> `name`, `rule` -> `rules`), and
  - checks each path against the schema subset (schema/pulumi-aws-7.51.1.json),
    so a fact can never name a property pulumi-aws does not have.

Usage:
    python3 crates/pulumi-program/facts/extract_facts.py > crates/pulumi-program/facts/pulumi-aws-7.51.1.facts.json
    # CI (offline): the committed facts are what sources.json says, every path
    # exists in the subset, every enum is a non-empty list; with the SDK
    # modules in the Go module cache the enum values are recomputed too.
    python3 crates/pulumi-program/facts/extract_facts.py --check crates/pulumi-program/facts/pulumi-aws-7.51.1.facts.json
"""

import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = os.path.join(HERE, "sources.json")
SUBSET = os.path.join(HERE, "..", "schema", "pulumi-aws-7.51.1.json")


def camel(name):
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def pulumi_path(tf_path, rename):
    """`attribute[].type` -> `attributes[].type`, each segment renamed."""
    out = []
    for segment in tf_path.split("."):
        many = segment.endswith("[]")
        name = segment[:-2] if many else segment
        name = camel(rename.get(name, name))
        out.append(name + ("[]" if many else ""))
    return ".".join(out)


def gomodcache():
    try:
        return subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def sdk_enum(ref, versions, cache):
    """Values of `<svc>.<Type>` from aws-sdk-go-v2's generated enums.go, or None."""
    service, type_name = ref.split(".")
    if cache is None:
        return None
    path = os.path.join(cache, "github.com", "aws", "aws-sdk-go-v2", "service",
                        f"{service}@{versions[service]}", "types", "enums.go")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        text = f.read()
    values = re.findall(r"^\s+%s\w*\s+%s\s*=\s*\"([^\"]*)\"" % (type_name, type_name), text, re.M)
    if not values:
        sys.exit(f"extract_facts: no values of {type_name} in {path}")
    return sorted(values)


def subset_has(subset, typ, path):
    """Whether a Pulumi property path exists among the type's inputs."""
    props = subset["resources"][typ]["inputs"]
    for i, segment in enumerate(path.split(".")):
        name = segment[:-2] if segment.endswith("[]") else segment
        if props is None or name not in props:
            return False
        t = props[name]["type"]
        while isinstance(t, dict) and ("array" in t or "map" in t):
            t = t.get("array") or t.get("map")
        props = subset["types"].get(t["ref"]) if isinstance(t, dict) and "ref" in t else None
        if i == len(path.split(".")) - 1:
            return True
    return False


def build(sources, subset, cache, require_sdk):
    facts = {"version": sources["pulumiAws"], "resources": {}}
    unresolved = []
    for typ, res in sorted(sources["resources"].items()):
        if typ not in subset["resources"]:
            sys.exit(f"extract_facts: {typ} is not a resource of the schema subset")
        props = {}
        for tf_path, rule in sorted(res["attributes"].items()):
            path = pulumi_path(tf_path, res["rename"])
            if not subset_has(subset, typ, path):
                sys.exit(f"extract_facts: {typ}: {tf_path} maps to {path}, which the schema subset lacks")
            fact = {}
            if rule.get("forceNew"):
                fact["forceNew"] = True
            if "values" in rule:
                fact["values"] = sorted(rule["values"])
            if "sdkEnum" in rule:
                values = sdk_enum(rule["sdkEnum"], sources["sdk"], cache)
                if values is None:
                    unresolved.append(rule["sdkEnum"])
                    if require_sdk:
                        sys.exit(f"extract_facts: the aws-sdk-go-v2 module for {rule['sdkEnum']} is not in the Go "
                                 f"module cache: go mod download github.com/aws/aws-sdk-go-v2/service/"
                                 f"{rule['sdkEnum'].split('.')[0]}@{sources['sdk'][rule['sdkEnum'].split('.')[0]]}")
                fact["values"] = values
                fact["enum"] = rule["sdkEnum"]
            for key in ("len", "range", "pattern"):
                if key in rule:
                    fact[key] = rule[key]
            props[path] = fact
        facts["resources"][typ] = {"terraform": res["terraform"], "source": res["source"], "properties": props}
    return facts, unresolved


def main():
    with open(SOURCES, encoding="utf-8") as f:
        sources = json.load(f)
    with open(SUBSET, encoding="utf-8") as f:
        subset = json.load(f)
    cache = gomodcache()
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        with open(sys.argv[2], encoding="utf-8") as f:
            committed = json.load(f)
        facts, unresolved = build(sources, subset, cache, require_sdk=False)
        problems = []
        for typ, res in facts["resources"].items():
            have = committed.get("resources", {}).get(typ)
            if have is None:
                problems.append(f"{typ} is missing")
                continue
            for path, fact in res["properties"].items():
                got = have["properties"].get(path)
                if got is None:
                    problems.append(f"{typ}.{path} is missing")
                    continue
                if "enum" in fact and fact["values"] is None:  # SDK enum not in the cache: shape only
                    vals = got.get("values")
                    if not (isinstance(vals, list) and vals and all(isinstance(v, str) for v in vals)):
                        problems.append(f"{typ}.{path}: {fact['enum']} needs a non-empty list of values")
                    fact = {**fact, "values": vals}
                if got != fact:
                    problems.append(f"{typ}.{path}: committed {got}, sources say {fact}")
            extra = set(have["properties"]) - set(res["properties"])
            problems += [f"{typ}.{p} is not in sources.json" for p in sorted(extra)]
        problems += [f"{t} is not in sources.json" for t in sorted(set(committed.get("resources", {})) - set(facts["resources"]))]
        if committed.get("version") != facts["version"]:
            problems.append(f"version {committed.get('version')} is not {facts['version']}")
        if problems:
            sys.exit("extract_facts --check: the committed facts differ from what this script writes:\n  "
                     + "\n  ".join(problems) + f"\nregenerate: python3 {sys.argv[0]} > {sys.argv[2]}")
        how = "enum values recomputed from aws-sdk-go-v2" if not unresolved else \
            f"enum values checked for shape only ({len(set(unresolved))} SDK enums not in the Go module cache)"
        print(f"extract_facts --check: {sys.argv[2]} matches ({len(facts['resources'])} types; {how})")
        return
    facts, _ = build(sources, subset, cache, require_sdk=True)
    json.dump(facts, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
