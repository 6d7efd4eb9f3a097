package main

// GetSchema's answer: the subset rewritten as a Pulumi package schema, the
// format pulumi-language-yaml type-checks a program against. The rewrite is
// mechanical, so every resource, function and type of the subset is served.

import (
	"encoding/json"
	"strings"
)

// PackageSchema renders the subset as a Pulumi package schema (JSON).
func PackageSchema(subset *Subset) ([]byte, error) {
	resources := map[string]any{}
	for token, sig := range subset.Resources {
		inputs, required := inputProperties(sig.Inputs)
		outputs := map[string]any{}
		for name, spec := range sig.Outputs {
			// id and urn are every resource's own, never schema properties.
			if name == "id" || name == "urn" {
				continue
			}
			outputs[name] = typeRef(outputObject(subset, token, name, spec))
		}
		resources[token] = map[string]any{
			"inputProperties": inputs,
			"requiredInputs":  required,
			"properties":      outputs,
		}
	}
	functions := map[string]any{}
	for token, sig := range subset.Functions {
		inputs, required := inputProperties(sig.Inputs)
		outputs := map[string]any{}
		for name, spec := range sig.Outputs {
			outputs[name] = typeRef(spec)
		}
		functions[token] = map[string]any{
			"inputs":  map[string]any{"properties": inputs, "required": required},
			"outputs": map[string]any{"properties": outputs},
		}
	}
	types := map[string]any{}
	for name, props := range subset.Types {
		inputs, required := inputProperties(props)
		types[typeToken(name)] = map[string]any{
			"type":       "object",
			"properties": inputs,
			"required":   required,
		}
	}
	region := map[string]any{"type": "string"}
	return json.Marshal(map[string]any{
		"name":        "aws",
		"displayName": "AWS",
		"version":     subset.Version,
		"description": "pulumi-aws " + subset.Version + " (the subset of its types this project uses, served by a provider double)",
		"meta":        map[string]any{"moduleFormat": "(.*)(?:/[^/]*)"},
		"config":      map[string]any{"variables": map[string]any{"region": region}},
		"provider": map[string]any{
			"inputProperties": map[string]any{"region": region},
		},
		"resources": resources,
		"functions": functions,
		"types":     types,
	})
}

// outputObject gives an output the subset records only as `object` (or a
// list of them) the fields of its type, where the subset holds that type as
// an input type too: pulumi-aws names it `<Resource><Property, singular>`
// (Certificate.domainValidationOptions → CertificateDomainValidationOption).
// Served as Any, the YAML host would refuse a program's access to a field
// (`${certificate.domainValidationOptions[0].resourceRecordName}`) that the
// real schema allows.
func outputObject(subset *Subset, token, name string, spec TypeSpec) TypeSpec {
	element, list := spec, false
	if spec.Array != nil {
		element, list = *spec.Array, true
	}
	if element.Named != "object" {
		return spec
	}
	parts := strings.Split(token, ":")
	module, _, _ := strings.Cut(parts[1], "/")
	singular := strings.TrimSuffix(name, "s")
	ref := module + "." + parts[2] + strings.ToUpper(singular[:1]) + singular[1:] + "Args"
	if _, ok := subset.Types[ref]; !ok {
		return spec
	}
	if list {
		return TypeSpec{Array: &TypeSpec{Ref: ref}}
	}
	return TypeSpec{Ref: ref}
}

func inputProperties(props map[string]Property) (map[string]any, []string) {
	out := map[string]any{}
	required := []string{}
	for name, prop := range props {
		out[name] = typeRef(prop.Type)
		if prop.Required {
			required = append(required, name)
		}
	}
	return out, required
}

// typeRef is a subset type as a schema type.
func typeRef(t TypeSpec) map[string]any {
	switch {
	case t.Array != nil:
		return map[string]any{"type": "array", "items": typeRef(*t.Array)}
	case t.Map != nil:
		return map[string]any{"type": "object", "additionalProperties": typeRef(*t.Map)}
	case t.Ref != "":
		return map[string]any{"$ref": "#/types/" + typeToken(t.Ref)}
	}
	switch t.Named {
	case "string", "integer", "number", "boolean":
		return map[string]any{"type": t.Named}
	case "archive":
		return map[string]any{"$ref": "pulumi.json#/Archive"}
	case "asset", "assetOrArchive":
		return map[string]any{"$ref": "pulumi.json#/Asset"}
	default: // any, and output objects whose fields the subset does not carry
		return map[string]any{"$ref": "pulumi.json#/Any"}
	}
}

// typeToken turns the Python SDK's type name into the schema's token:
// `lambda_.FunctionEnvironmentArgs` → `aws:lambda/FunctionEnvironment:FunctionEnvironment`.
func typeToken(name string) string {
	module, typ, found := strings.Cut(name, ".")
	if !found {
		module, typ = "index", name
	}
	module = strings.TrimSuffix(module, "_")
	typ = strings.TrimSuffix(typ, "Args")
	return "aws:" + module + "/" + typ + ":" + typ
}
