package main

// Check's validation: what the real provider refuses before any cloud call —
// an unknown property, a missing required one, a value of the wrong type —
// each failure naming the property's path (`rules[0].statement.limit`).
// The subset declares no enums (extract.py reads types, not enum values), so
// no enum is checked.

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

// Failure is one refused property.
type Failure struct {
	Path   string
	Reason string
}

// CheckInputs validates values against declared properties.
func (s *Subset) CheckInputs(declared map[string]Property, values resource.PropertyMap) []Failure {
	var failures []Failure
	s.checkObject("", declared, values, &failures)
	sort.Slice(failures, func(i, j int) bool { return failures[i].Path < failures[j].Path })
	return failures
}

func (s *Subset) checkObject(prefix string, declared map[string]Property, values resource.PropertyMap, out *[]Failure) {
	for key, value := range values {
		name := string(key)
		if strings.HasPrefix(name, "__") {
			continue // engine bookkeeping such as __defaults
		}
		path := join(prefix, name)
		prop, ok := declared[name]
		if !ok {
			*out = append(*out, Failure{path, fmt.Sprintf("%s is not a property of this type; existing properties are: %s",
				path, strings.Join(sortedNames(declared), ", "))})
			continue
		}
		s.checkValue(path, prop.Type, value, out)
	}
	for name, prop := range declared {
		if !prop.Required {
			continue
		}
		if v, ok := values[resource.PropertyKey(name)]; !ok || v.IsNull() {
			*out = append(*out, Failure{join(prefix, name), fmt.Sprintf("Missing required argument: %s is required", join(prefix, name))})
		}
	}
}

func (s *Subset) checkValue(path string, want TypeSpec, v resource.PropertyValue, out *[]Failure) {
	for v.IsSecret() {
		v = v.SecretValue().Element
	}
	if v.IsOutput() {
		if !v.OutputValue().Known {
			return
		}
		v = v.OutputValue().Element
	}
	if v.IsComputed() || v.IsNull() {
		return
	}
	wrong := func(expected string) {
		*out = append(*out, Failure{path, fmt.Sprintf("%s: expected %s, got %s", path, expected, kind(v))})
	}
	switch {
	case want.Array != nil:
		if !v.IsArray() {
			wrong("a list")
			return
		}
		for i, item := range v.ArrayValue() {
			s.checkValue(fmt.Sprintf("%s[%d]", path, i), *want.Array, item, out)
		}
	case want.Map != nil:
		if !v.IsObject() {
			wrong("a map")
			return
		}
		for key, item := range v.ObjectValue() {
			s.checkValue(join(path, string(key)), *want.Map, item, out)
		}
	case want.Ref != "":
		if !v.IsObject() {
			wrong("an object")
			return
		}
		declared, ok := s.Types[want.Ref]
		if !ok {
			*out = append(*out, Failure{path, fmt.Sprintf("%s: the schema subset lacks the type %s", path, want.Ref)})
			return
		}
		s.checkObject(path, declared, v.ObjectValue(), out)
	default:
		s.checkNamed(path, want.Named, v, wrong)
	}
}

// checkNamed checks a scalar the way the Terraform bridge coerces it: a
// number or boolean may also arrive as a string that parses as one.
func (s *Subset) checkNamed(path, want string, v resource.PropertyValue, wrong func(string)) {
	switch want {
	case "string":
		if !v.IsString() && !v.IsNumber() && !v.IsBool() {
			wrong("a string")
		}
	case "integer":
		if v.IsNumber() && v.NumberValue() == math.Trunc(v.NumberValue()) {
			return
		}
		if v.IsString() {
			if _, err := strconv.ParseInt(v.StringValue(), 10, 64); err == nil {
				return
			}
		}
		wrong("an integer")
	case "number":
		if v.IsNumber() {
			return
		}
		if v.IsString() {
			if _, err := strconv.ParseFloat(v.StringValue(), 64); err == nil {
				return
			}
		}
		wrong("a number")
	case "boolean":
		if v.IsBool() {
			return
		}
		if v.IsString() {
			if _, err := strconv.ParseBool(v.StringValue()); err == nil {
				return
			}
		}
		wrong("a boolean")
	case "archive":
		if !v.IsArchive() {
			wrong("an archive")
		}
	case "asset", "assetOrArchive":
		if !v.IsAsset() && !v.IsArchive() {
			wrong("an asset or archive")
		}
	}
}

func kind(v resource.PropertyValue) string {
	switch {
	case v.IsString():
		return fmt.Sprintf("the string %q", v.StringValue())
	case v.IsNumber():
		return fmt.Sprintf("the number %v", v.NumberValue())
	case v.IsBool():
		return fmt.Sprintf("the boolean %v", v.BoolValue())
	case v.IsArray():
		return "a list"
	case v.IsObject():
		return "an object"
	case v.IsAsset():
		return "an asset"
	case v.IsArchive():
		return "an archive"
	}
	return v.TypeString()
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

func sortedNames(props map[string]Property) []string {
	names := make([]string, 0, len(props))
	for name := range props {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}
