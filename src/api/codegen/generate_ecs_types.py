#!/usr/bin/env python3
"""Writes src/api/ecs_types.rs: Rust mirrors of the input shapes of RegisterTaskDefinition,
CreateService, CreateCluster and RunTask, member for member, from the ECS service model that ships in
botocore (pinned in tests/testenv/requirements.txt).

Why generated: the three inputs reach about ninety nested shapes; writing them by hand would
drift from ECS. The output is committed and reviewed like any source file; rerun with
`make generate` after bumping botocore and aws-sdk-ecs together. tests/api_coverage.rs checks
the result against the pinned aws-sdk-ecs, independently of this script.

The JSON form of every generated type is ECS's own wire form (same member names and
shapes), so `aws ecs ... --cli-input-json` documents paste in unchanged, and the operator
hands the same JSON to the SDK's schema codec (src/ecs/wire.rs).
"""
import html
import re
import sys

import botocore
import botocore.session

ROOTS = ["RegisterTaskDefinition", "CreateService", "CreateCluster", "RunTask", "CreateCapacityProvider"]

# Members left out of the Kubernetes API, with the reason (also listed in README).
EXCLUDED = {
    ("CreateServiceRequest", "clientToken"): "derived from the object's UID by the operator",
    ("RunTaskRequest", "clientToken"): "derived from the object's UID and generation by the operator",
    # In botocore's model but not yet in the pinned aws-sdk-ecs, so the operator could not send it.
    ("RegisterTaskDefinitionRequest", "trustedExecutionConfiguration"): "not in aws-sdk-ecs 1.157",
    ("GatewayConnector", "deregistrationDelay"): "not in aws-sdk-ecs 1.157",
    ("InstanceLaunchTemplate", "nitroEnclavesEnabled"): "not in aws-sdk-ecs 1.157",
}

# Members the Kubernetes API treats as optional although ECS requires them, because the
# operator fills them in (from metadata.name).
OPTIONAL = {
    ("RegisterTaskDefinitionRequest", "family"),
    ("CreateServiceRequest", "serviceName"),
    ("RunTaskRequest", "taskDefinition"),
    ("CreateCapacityProviderRequest", "name"),
}

# Members ECS rejects when absent although its model marks them optional; required here so
# that admission catches the mistake.
REQUIRED = {
    ("ContainerDefinition", "name"),
    ("ContainerDefinition", "image"),
}

# Lists bounded here so that CEL rules over them stay within the apiserver's cost budget.
MAX_ITEMS = {
    ("CreateClusterRequest", "settings"): 8,
    ("DeploymentConfiguration", "lifecycleHooks"): 16,
    ("DeploymentLifecycleHook", "lifecycleStages"): 16,
}

# Integers that may legitimately be negative (-1 means unlimited for ulimits).
SIGNED = {("Ulimit", "softLimit"), ("Ulimit", "hardLimit")}

# One-line descriptions replacing the model's where the Kubernetes API means more.
DOC_OVERRIDES = {
    ("RegisterTaskDefinitionRequest", "family"):
        "Task definition family; defaults to metadata.name. Immutable.",
    ("CreateServiceRequest", "serviceName"):
        "Name of the service; defaults to metadata.name. Immutable.",
    ("CreateServiceRequest", "cluster"):
        "Cluster name or ARN; ECS's default cluster when neither this nor clusterRef is set. Immutable.",
    ("CreateServiceRequest", "taskDefinition"):
        "Task definition as family, family:revision or full ARN; exclusive with taskDefinitionRef.",
    ("CreateClusterRequest", "clusterName"):
        "Name of the cluster; defaults to metadata.name.",
    ("RunTaskRequest", "cluster"):
        "Cluster name or ARN; ECS's default cluster when neither this nor clusterRef is set.",
    ("RunTaskRequest", "taskDefinition"):
        "Task definition as family, family:revision or full ARN; exclusive with taskDefinitionRef.",
    ("CreateCapacityProviderRequest", "name"):
        "Name of the capacity provider; defaults to metadata.name. Immutable.",
    ("CreateCapacityProviderRequest", "cluster"):
        "The cluster (name) a Managed Instances provider belongs to; exclusive with clusterRef. Immutable.",
}

RUST_NAMES = {
    "RegisterTaskDefinitionRequest": "RegisterTaskDefinitionInput",
    "CreateServiceRequest": "CreateServiceInput",
    "CreateClusterRequest": "CreateClusterInput",
    "RunTaskRequest": "RunTaskInput",
    "CreateCapacityProviderRequest": "CreateCapacityProviderInput",
}

KEYWORDS = {"type", "match", "ref", "async", "await", "move", "mod", "use", "in", "loop"}


def snake(name):
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    return s.lower()


def camel(snake_name):
    head, *rest = snake_name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def field_ident(member):
    ident = snake(member)
    return f"r#{ident}" if ident in KEYWORDS else ident


def variant_ident(value):
    parts = re.split(r"[^A-Za-z0-9]+", value)
    ident = "".join(p[:1].upper() + p[1:].lower() for p in parts if p)
    return ident if ident[:1].isalpha() else "V" + ident


def one_line(doc):
    text = html.unescape(re.sub(r"<[^>]+>", " ", doc or ""))
    text = re.sub(r"\s+", " ", text).strip()
    match = re.match(r"(.+?[.!?])(\s|$)", text)
    line = match.group(1) if match else text
    if len(line) > 240:
        line = line[:237].rsplit(" ", 1)[0] + "..."
    return line.replace("[", "(").replace("]", ")") or "See the ECS API reference."


def is_document(shape):
    """botocore's "document" members (e.g. a lifecycle hook's hookDetails) are free-form
    JSON: any value, kept as written (x-kubernetes-preserve-unknown-fields), not a struct."""
    return shape.type_name == "structure" and shape.metadata.get("document", False)


def type_name(shape):
    return RUST_NAMES.get(shape.name, shape.name)


class Generator:
    def __init__(self, model):
        self.model = model
        self.structs = []
        self.enums = []
        self.seen = set()

    def visit(self, shape):
        if shape.name in self.seen or is_document(shape):
            return
        if shape.type_name == "structure":
            self.seen.add(shape.name)
            self.structs.append(shape)
            for name, member in shape.members.items():
                if (shape.name, name) not in EXCLUDED:
                    self.visit(member)
        elif shape.type_name == "list":
            self.visit(shape.member)
        elif shape.type_name == "map":
            self.visit(shape.value)
        elif shape.type_name == "string" and shape.enum:
            self.seen.add(shape.name)
            self.enums.append(shape)

    def rust_type(self, shape):
        kind = shape.type_name
        if is_document(shape):
            return "serde_json::Value"
        if kind == "structure":
            return type_name(shape)
        if kind == "list":
            return f"Vec<{self.rust_type(shape.member)}>"
        if kind == "map":
            return f"BTreeMap<String, {self.rust_type(shape.value)}>"
        if kind == "string":
            return shape.name if shape.enum else "String"
        return {"integer": "i32", "long": "i64", "boolean": "bool", "double": "f64"}[kind]

    def required(self, shape):
        return [m for m in shape.members
                if (m in shape.required_members or (shape.name, m) in REQUIRED)
                and (shape.name, m) not in OPTIONAL and (shape.name, m) not in EXCLUDED]

    def has_default(self, shape):
        """Default can be derived unless a required member is an enum (no sensible default)."""
        for member in self.required(shape):
            target = shape.members[member]
            if target.type_name == "string" and target.enum:
                return False
            if target.type_name == "structure" and not self.has_default(target):
                return False
        return True

    def struct(self, shape):
        out = [f"/// {one_line(shape.documentation)}"]
        default = ", Default" if self.has_default(shape) else ""
        out.append(f"#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug{default}, PartialEq)]")
        out.append('#[serde(rename_all = "camelCase")]')
        out.append(f"pub struct {type_name(shape)} {{")
        required = set(self.required(shape))
        for member, target in shape.members.items():
            key = (shape.name, member)
            if key in EXCLUDED:
                continue
            is_required = member in required
            doc = DOC_OVERRIDES.get(key) or one_line(target.documentation)
            out.append(f"    /// {doc}")
            ident = field_ident(member)
            if camel(ident.removeprefix("r#")) != member:
                out.append(f'    #[serde(rename = "{member}")]')
            if key in MAX_ITEMS:
                out.append(f"    #[schemars(length(max = {MAX_ITEMS[key]}))]")
            if is_document(target):
                out.append('    #[schemars(schema_with = "crate::api::free_form")]')
            if target.type_name in ("integer", "long") and key not in SIGNED:
                out.append("    #[schemars(range(min = 0))]")
            rust = self.rust_type(target)
            if is_required:
                out.append(f"    pub {ident}: {rust},")
            else:
                # An optional structure is boxed: most are unset, and inline they made every
                # cached object carry their full size (a ContainerDefinition was 984 bytes).
                if target.type_name == "structure" and not is_document(target):
                    rust = f"Box<{rust}>"
                out.append('    #[serde(default, skip_serializing_if = "Option::is_none")]')
                out.append(f"    pub {ident}: Option<{rust}>,")
        out.append("}")
        return "\n".join(out)

    def enum(self, shape):
        out = [f"/// {one_line(shape.documentation) if shape.documentation else 'Values ECS accepts for ' + shape.name + '.'}"]
        out.append("#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]")
        out.append(f"pub enum {shape.name} {{")
        for value in shape.enum:
            out.append(f'    #[serde(rename = "{value}")]')
            out.append(f"    {variant_ident(value)},")
        out.append("}")
        out.append(f"impl {shape.name} {{")
        out.append("    /// The value as ECS spells it on the wire.")
        out.append("    pub fn as_str(&self) -> &'static str {")
        out.append("        match self {")
        for value in shape.enum:
            out.append(f'            Self::{variant_ident(value)} => "{value}",')
        out.append("        }")
        out.append("    }")
        out.append("}")
        return "\n".join(out)


def main():
    session = botocore.session.get_session()
    model = session.get_service_model("ecs")
    gen = Generator(model)
    for op in ROOTS:
        gen.visit(model.operation_model(op).input_shape)

    header = f"""// @generated by src/api/codegen/generate_ecs_types.py from the ECS service model in
// botocore {botocore.__version__} (API version {model.api_version}). Do not edit by hand: rerun
// `make generate`. Every type mirrors the ECS input shape of the same name, member for member.
#![allow(clippy::large_enum_variant)]

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{{Deserialize, Serialize}};
"""
    parts = [header]
    parts += [gen.struct(s) for s in gen.structs]
    parts += [gen.enum(e) for e in sorted(gen.enums, key=lambda e: e.name)]
    sys.stdout.write("\n\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
