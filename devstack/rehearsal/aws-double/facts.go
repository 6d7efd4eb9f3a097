package main

// What pulumi-aws 7.51.1 refuses or replaces, beyond names and types: the
// provider facts (crates/pulumi-program/facts/pulumi-aws-7.51.1.facts.json,
// written by extract_facts.py from the Terraform AWS provider's schema
// source). Read at start-up from AWS_DOUBLE_FACTS; a type with no facts is
// checked for names and types only and always updated in place.

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

// Facts are the rules per resource type, keyed by Pulumi property path
// (`name`, `rules[].name`: `[]` is every element of a list).
type Facts struct {
	Version   string                   `json:"version"`
	Resources map[string]ResourceFacts `json:"resources"`
}

// ResourceFacts are one type's rules and where they were read.
type ResourceFacts struct {
	Terraform  string          `json:"terraform"`
	Source     string          `json:"source"`
	Properties map[string]Rule `json:"properties"`
}

// Rule is what the provider's schema says of one property.
type Rule struct {
	ForceNew bool     `json:"forceNew"`
	Values   []string `json:"values"`
	Len      []int    `json:"len"`
	Range    []int    `json:"range"`
	Pattern  string   `json:"pattern"`
	pattern  *regexp.Regexp
}

// LoadFacts reads the facts from AWS_DOUBLE_FACTS.
func LoadFacts() (*Facts, error) {
	path := os.Getenv("AWS_DOUBLE_FACTS")
	if path == "" {
		return nil, fmt.Errorf("AWS_DOUBLE_FACTS is not set: it names the provider facts " +
			"(crates/pulumi-program/facts/pulumi-aws-7.51.1.facts.json) the double checks and diffs with")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the provider facts %s: %w", path, err)
	}
	var facts Facts
	if err := json.Unmarshal(data, &facts); err != nil {
		return nil, fmt.Errorf("parsing the provider facts %s: %w", path, err)
	}
	if facts.Version != Version {
		return nil, fmt.Errorf("the provider facts %s are pulumi-aws %s, the double plays %s", path, facts.Version, Version)
	}
	for typ, res := range facts.Resources {
		for prop, rule := range res.Properties {
			if rule.Pattern == "" {
				continue
			}
			re, err := regexp.Compile(rule.Pattern)
			if err != nil {
				return nil, fmt.Errorf("the provider facts %s: %s.%s: pattern %q: %w", path, typ, prop, rule.Pattern, err)
			}
			rule.pattern = re
			res.Properties[prop] = rule
		}
	}
	return &facts, nil
}

// Replaces are the top-level properties whose change replaces a resource.
func (f *Facts) Replaces(typ string) map[string]bool {
	out := map[string]bool{}
	for path, rule := range f.Resources[typ].Properties {
		if rule.ForceNew {
			out[strings.TrimSuffix(strings.SplitN(path, ".", 2)[0], "[]")] = true
		}
	}
	return out
}

// CheckValues refuses values the provider's validators refuse, with the
// validators' own wording and the property's path.
func (f *Facts) CheckValues(typ string, inputs resource.PropertyMap) []Failure {
	res, ok := f.Resources[typ]
	if !ok {
		return nil
	}
	paths := make([]string, 0, len(res.Properties))
	for path := range res.Properties {
		paths = append(paths, path)
	}
	sort.Strings(paths)
	var failures []Failure
	for _, path := range paths {
		rule := res.Properties[path]
		for _, at := range valuesAt(resource.NewObjectProperty(inputs), strings.Split(path, "."), "") {
			if reason := rule.refuse(at.path, at.value); reason != "" {
				failures = append(failures, Failure{Path: at.path, Reason: reason})
			}
		}
	}
	return failures
}

type located struct {
	path  string
	value resource.PropertyValue
}

// valuesAt finds the known values at a path (`rules[].name`), with their
// concrete paths (`rules[0].name`); unknown values are not checked.
func valuesAt(v resource.PropertyValue, segments []string, prefix string) []located {
	v = settled(v)
	if v.IsComputed() || v.IsNull() {
		return nil
	}
	if len(segments) == 0 {
		return []located{{prefix, v}}
	}
	if !v.IsObject() {
		return nil
	}
	many := strings.HasSuffix(segments[0], "[]")
	key := strings.TrimSuffix(segments[0], "[]")
	child, ok := v.ObjectValue()[resource.PropertyKey(key)]
	if !ok {
		return nil
	}
	path := join(prefix, key)
	if !many {
		return valuesAt(child, segments[1:], path)
	}
	child = settled(child)
	if !child.IsArray() {
		return nil
	}
	var out []located
	for i, item := range child.ArrayValue() {
		out = append(out, valuesAt(item, segments[1:], fmt.Sprintf("%s[%d]", path, i))...)
	}
	return out
}

// settled unwraps secrets and known outputs; unknowns stay computed.
func settled(v resource.PropertyValue) resource.PropertyValue {
	for {
		switch {
		case v.IsSecret():
			v = v.SecretValue().Element
		case v.IsOutput():
			if !v.OutputValue().Known {
				return resource.MakeComputed(resource.NewStringProperty(""))
			}
			v = v.OutputValue().Element
		default:
			return v
		}
	}
}

// refuse words a refusal as the Terraform SDK's validators do
// (validation.StringInSlice, StringLenBetween, IntBetween, StringMatch).
func (r Rule) refuse(path string, v resource.PropertyValue) string {
	var text string
	switch {
	case v.IsString():
		text = v.StringValue()
	case v.IsNumber():
		text = strconv.FormatFloat(v.NumberValue(), 'f', -1, 64)
	case v.IsBool():
		text = strconv.FormatBool(v.BoolValue())
	default:
		return ""
	}
	if len(r.Values) > 0 && !contains(r.Values, text) {
		quoted := make([]string, len(r.Values))
		for i, value := range r.Values {
			quoted[i] = strconv.Quote(value)
		}
		return fmt.Sprintf("expected %s to be one of [%s], got %s", path, strings.Join(quoted, " "), text)
	}
	if len(r.Len) == 2 && (len(text) < r.Len[0] || len(text) > r.Len[1]) {
		return fmt.Sprintf("expected length of %s to be in the range (%d - %d), got %s", path, r.Len[0], r.Len[1], text)
	}
	if len(r.Range) == 2 {
		n, err := strconv.ParseFloat(text, 64)
		if err != nil || n < float64(r.Range[0]) || n > float64(r.Range[1]) {
			return fmt.Sprintf("expected %s to be in the range (%d - %d), got %s", path, r.Range[0], r.Range[1], text)
		}
	}
	if r.pattern != nil && !r.pattern.MatchString(text) {
		return fmt.Sprintf("invalid value for %s (must match %s), got %s", path, r.Pattern, text)
	}
	return ""
}

func contains(values []string, s string) bool {
	for _, v := range values {
		if v == s {
			return true
		}
	}
	return false
}
