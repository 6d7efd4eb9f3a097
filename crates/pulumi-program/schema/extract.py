#!/usr/bin/env python3
"""Extracts the subset of the pulumi-aws schema the offline check needs.

Source of truth: the generated Python SDK of pulumi-aws (PyPI `pulumi-aws`),
read with `ast` only (nothing is imported or executed). For every resource
class it records the type token (from the `super().__init__('aws:...')` call),
the `<Resource>Args` constructor parameters (required = no default) under
their camelCase names (from `@pulumi.getter(name=...)`) with their types, the
resource's output properties, every nested input type those reach, and the
data-source functions (`pulumi.runtime.invoke('aws:...')`).

Full details are kept for the modules in MODULES (the ones the program uses;
add a module here when the program starts using it); for every other module
only the type and function tokens are kept, so the check can tell "no such
type" from "type outside the extracted subset".

Usage:
    pip install pulumi-aws==7.51.1
    python3 crates/pulumi-program/schema/extract.py > crates/pulumi-program/schema/pulumi-aws-7.51.1.json
    # CI: fail if the committed file is not what this script produces
    python3 crates/pulumi-program/schema/extract.py --check crates/pulumi-program/schema/pulumi-aws-7.51.1.json

The output is deterministic (sorted keys and files), so it can be diffed.
"""

import ast
import json
import os
import sys
from importlib import metadata

# Modules (sub-packages of pulumi_aws; "index" is the package root) whose
# resources, functions and input types are extracted in full.
MODULES = [
    "index",
    "acm",
    "apigateway",
    "apigatewayv2",
    "cloudfront",
    "cloudwatch",
    "dynamodb",
    "iam",
    "lambda_",
    "route53",
    "sns",
    "sqs",
    "wafv2",
]

SCALARS = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "Any": "any",
}


def package_dir():
    try:
        import pulumi_aws  # noqa: F401  (only to locate the sources)
    except ImportError:
        sys.exit("pulumi_aws is not installed: pip install pulumi-aws==7.51.1")
    return os.path.dirname(pulumi_aws.__file__)


def camel(name):
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def dotted(node):
    """`pulumi.Input` -> "pulumi.Input"; `_builtins.str` -> "_builtins.str"."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


class TypeReader:
    """Turns a parameter annotation into a schema type for one module."""

    def __init__(self, module):
        self.module = module

    def read(self, node):
        if node is None:
            return "any"
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return self.named(node.value)
        if isinstance(node, ast.Constant) and node.value is None:
            return None
        name = dotted(node)
        if name is not None:
            short = name.split(".")[-1]
            if name in ("pulumi.Archive",):
                return "archive"
            if name in ("pulumi.Asset",):
                return "asset"
            if short in SCALARS:
                return SCALARS[short]
            return self.named(name)
        if isinstance(node, ast.Subscript):
            outer = dotted(node.value)
            outer = outer.split(".")[-1] if outer else None
            inner = node.slice
            if outer in ("Input", "Output", "Optional", "InputType"):
                return self.read(inner)
            if outer == "Sequence" or outer == "List":
                return {"array": self.read(inner)}
            if outer == "Mapping" or outer == "Dict":
                elts = inner.elts if isinstance(inner, ast.Tuple) else [inner]
                return {"map": self.read(elts[-1])}
            if outer == "Union":
                elts = inner.elts if isinstance(inner, ast.Tuple) else [inner]
                types = [self.read(e) for e in elts]
                types = [t for t in types if t is not None and t != "skip"]
                if sorted(map(str, types)) == ["archive", "asset"]:
                    return "assetOrArchive"
                for t in types:
                    if t != "enum":
                        return t
                return "string"
        return "any"

    def named(self, text):
        """A quoted or dotted class name: an input type, an enum, or an output type."""
        if text.endswith("ArgsDict") or text.startswith("outputs.") or ".outputs." in text:
            return "skip"
        module = self.module
        name = text
        if "." in text:
            prefix, name = text.rsplit(".", 1)
            prefix = prefix.lstrip("_")
            if prefix in ("root_inputs", "root_enums"):
                module = "index"
            elif prefix not in ("", "inputs", "_inputs", "enums", "_enums"):
                module = prefix
        if name.endswith("Args"):
            return {"ref": f"{module}.{name}"}
        # Anything else quoted in an input annotation is a string enum.
        return "enum"


def getters(cls):
    """(method, camelCase name) for each `@pulumi.getter` of a class."""
    for item in cls.body:
        if not isinstance(item, ast.FunctionDef):
            continue
        for deco in item.decorator_list:
            target = deco.func if isinstance(deco, ast.Call) else deco
            if dotted(target) != "pulumi.getter":
                continue
            wire = item.name
            if isinstance(deco, ast.Call):
                for kw in deco.keywords:
                    if kw.arg == "name" and isinstance(kw.value, ast.Constant):
                        wire = kw.value.value
            yield item, wire


def getter_names(cls):
    """python name -> camelCase name, from the `@pulumi.getter` decorators."""
    return {item.name: wire for item, wire in getters(cls)}


def getter_types(cls, reader):
    return {wire: output_type(reader.read(item.returns)) for item, wire in getters(cls)}


def output_type(t):
    """Output types are not extracted: a nested output object is just "object"."""
    if t in ("skip", None, "enum") or (isinstance(t, dict) and "ref" in t):
        return "string" if t == "enum" else "object"
    if isinstance(t, dict):
        return {k: output_type(v) for k, v in t.items()}
    return t


def init_params(cls, reader):
    """The keyword-only parameters of `__init__`: {camelName: {type, required}}."""
    init = next(
        (i for i in cls.body if isinstance(i, ast.FunctionDef) and i.name == "__init__"),
        None,
    )
    if init is None:
        return {}
    wire = getter_names(cls)
    params = {}
    args = init.args
    for arg, default in zip(args.kwonlyargs, args.kw_defaults):
        t = reader.read(arg.annotation)
        if t in ("skip", None):
            t = "any"
        if t == "enum":
            t = "string"
        params[wire.get(arg.arg, camel(arg.arg))] = {
            "type": fix_enums(t),
            "required": default is None,
        }
    return params


def fix_enums(t):
    if t == "enum":
        return "string"
    if isinstance(t, dict):
        return {k: fix_enums(v) for k, v in t.items()}
    return t


def resource_token(cls):
    """The token in `super(X, __self__).__init__('aws:...', ...)`."""
    for node in ast.walk(cls):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "__init__"
            and isinstance(node.func.value, ast.Call)
            and dotted(node.func.value.func) == "super"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and node.args[0].value.startswith("aws:")
        ):
            return node.args[0].value
    return None


def is_custom_resource(cls):
    return any(dotted(b) == "pulumi.CustomResource" for b in cls.bases)


def invoke_token(fn):
    for node in ast.walk(fn):
        if (
            isinstance(node, ast.Call)
            and dotted(node.func) == "pulumi.runtime.invoke"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            return node.args[0].value
    return None


def function_args(fn, reader):
    """`__args__['camelName'] = python_name` assignments, typed from the signature."""
    annotations = {a.arg: a.annotation for a in fn.args.args}
    defaults = dict(
        zip([a.arg for a in fn.args.args][-len(fn.args.defaults):], fn.args.defaults)
    ) if fn.args.defaults else {}
    out = {}
    for node in ast.walk(fn):
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Subscript)
            and dotted(node.targets[0].value) == "__args__"
            and isinstance(node.targets[0].slice, ast.Constant)
            and isinstance(node.value, ast.Name)
        ):
            wire = node.targets[0].slice.value
            py = node.value.id
            t = reader.read(annotations.get(py))
            if t in ("skip", None):
                t = "any"
            out[wire] = {"type": fix_enums(t), "required": py not in defaults}
    return out


def parse(path):
    with open(path, encoding="utf-8") as f:
        return ast.parse(f.read(), filename=path)


def module_files(root, module):
    folder = root if module == "index" else os.path.join(root, module)
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py") and not name.startswith("__"):
            yield os.path.join(folder, name)


def all_modules(root):
    mods = ["index"]
    for name in sorted(os.listdir(root)):
        if os.path.isfile(os.path.join(root, name, "__init__.py")) and not name.startswith("_"):
            mods.append(name)
    return mods


def quick_tokens(path):
    """Type and function tokens of one file, found without a full walk of details."""
    text = open(path, encoding="utf-8").read()
    resources, functions = [], []
    tree = ast.parse(text)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and is_custom_resource(node):
            token = resource_token(node)
            if token:
                resources.append(token)
        if isinstance(node, ast.FunctionDef):
            token = invoke_token(node)
            if token:
                functions.append(token)
    return resources, functions


def main():
    root = package_dir()
    version = metadata.version("pulumi_aws")
    schema = {
        "package": "aws",
        "version": version,
        "modules": sorted(MODULES),
        "resources": {},
        "functions": {},
        "types": {},
        "otherResources": [],
        "otherFunctions": [],
    }
    for module in all_modules(root):
        full = module in MODULES
        for path in module_files(root, module):
            base = os.path.basename(path)
            if base in ("_enums.py", "_utilities.py", "outputs.py", "config") or base.startswith("_") and base != "_inputs.py":
                continue
            reader = TypeReader(module)
            if not full:
                if base == "_inputs.py":
                    continue
                resources, functions = quick_tokens(path)
                schema["otherResources"].extend(resources)
                schema["otherFunctions"].extend(functions)
                continue
            tree = parse(path)
            classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
            if base == "_inputs.py":
                for name, cls in classes.items():
                    if name.endswith("Args") and not name.endswith("ArgsDict"):
                        schema["types"][f"{module}.{name}"] = init_params(cls, reader)
                continue
            for name, cls in classes.items():
                if not is_custom_resource(cls):
                    continue
                token = resource_token(cls)
                if token is None:
                    continue
                args = classes.get(f"{name}Args")
                outputs = getter_types(cls, reader)
                outputs.setdefault("id", "string")
                outputs.setdefault("urn", "string")
                schema["resources"][token] = {
                    "inputs": init_params(args, reader) if args is not None else {},
                    "outputs": outputs,
                }
            for node in tree.body:
                if isinstance(node, ast.FunctionDef) and not node.name.endswith("_output"):
                    token = invoke_token(node)
                    if token is None:
                        continue
                    result = None
                    if isinstance(node.returns, ast.Name):
                        result = classes.get(node.returns.id.removeprefix("Awaitable"))
                    schema["functions"][token] = {
                        "inputs": function_args(node, reader),
                        "outputs": getter_types(result, reader) if result is not None else {},
                    }
    schema["otherResources"].sort()
    schema["otherFunctions"].sort()
    text = json.dumps(schema, sort_keys=True, separators=(",", ":")) + "\n"
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        with open(sys.argv[2], encoding="utf-8") as f:
            committed = f.read()
        if committed != text:
            sys.exit(f"{sys.argv[2]} is not what extract.py produces from pulumi-aws {version}; regenerate it")
        print(f"{sys.argv[2]}: matches pulumi-aws {version}")
        return
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
