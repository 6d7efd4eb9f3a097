package main

// The pulumi-aws 7.51.1 types the double knows: the subset the offline check
// uses (crates/pulumi-program/schema/pulumi-aws-7.51.1.json, extracted by
// extract.py from the published Python SDK). It is read at start-up from the
// path in AWS_DOUBLE_SCHEMA, so a type added to the subset is served, checked
// and created without a change here.

import (
	"encoding/json"
	"fmt"
	"os"
)

// Subset is the extracted file, as extract.py writes it.
type Subset struct {
	Version        string                         `json:"version"`
	Resources      map[string]Signature           `json:"resources"`
	Functions      map[string]Signature           `json:"functions"`
	Types          map[string]map[string]Property `json:"types"`
	OtherResources []string                       `json:"otherResources"`
	OtherFunctions []string                       `json:"otherFunctions"`
}

// Signature is a resource's or a function's inputs and outputs.
type Signature struct {
	Inputs  map[string]Property `json:"inputs"`
	Outputs map[string]TypeSpec `json:"outputs"`
}

// Property is one input: its type and whether it is required.
type Property struct {
	Type     TypeSpec `json:"type"`
	Required bool     `json:"required"`
}

// TypeSpec is `"string"` (or integer, number, boolean, any, object, archive,
// asset, assetOrArchive), `{"array": T}`, `{"map": T}` or `{"ref": "mod.NameArgs"}`.
type TypeSpec struct {
	Named string
	Array *TypeSpec
	Map   *TypeSpec
	Ref   string
}

func (t *TypeSpec) UnmarshalJSON(data []byte) error {
	if err := json.Unmarshal(data, &t.Named); err == nil {
		return nil
	}
	var shape struct {
		Array *TypeSpec `json:"array"`
		Map   *TypeSpec `json:"map"`
		Ref   string    `json:"ref"`
	}
	if err := json.Unmarshal(data, &shape); err != nil {
		return fmt.Errorf("a type is neither a name nor an object: %w", err)
	}
	if shape.Array == nil && shape.Map == nil && shape.Ref == "" {
		return fmt.Errorf("a type object has none of array, map, ref: %s", data)
	}
	t.Array, t.Map, t.Ref = shape.Array, shape.Map, shape.Ref
	return nil
}

// LoadSubset reads the subset from AWS_DOUBLE_SCHEMA.
func LoadSubset() (*Subset, error) {
	path := os.Getenv("AWS_DOUBLE_SCHEMA")
	if path == "" {
		return nil, fmt.Errorf("AWS_DOUBLE_SCHEMA is not set: it names the pulumi-aws schema subset " +
			"(crates/pulumi-program/schema/pulumi-aws-7.51.1.json) the double serves")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the pulumi-aws schema subset %s: %w", path, err)
	}
	var subset Subset
	if err := json.Unmarshal(data, &subset); err != nil {
		return nil, fmt.Errorf("parsing the pulumi-aws schema subset %s: %w", path, err)
	}
	if subset.Version != Version {
		return nil, fmt.Errorf("the schema subset %s is pulumi-aws %s, the double plays %s", path, subset.Version, Version)
	}
	return &subset, nil
}
