package main

// Diff's plan: old inputs against new ones, property by property, and which
// changes replace the resource (the provider facts' ForceNew) and in which
// order (deleteBeforeReplace, as the Terraform bridge decides it).

import (
	"sort"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// diffRequest diffs a request's old inputs against its new ones: a
// resource's (replaces: the properties whose change replaces it; autonamed:
// its `name` is one pulumi-aws auto-names), or the provider's own
// configuration (nil, false).
func diffRequest(req *pulumirpc.DiffRequest, replaces map[string]bool, autonamed bool) (*pulumirpc.DiffResponse, error) {
	olds, err := unmarshal(req.GetOldInputs())
	if err != nil {
		return nil, err
	}
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	resp := diff(olds, news)
	for _, k := range resp.Diffs {
		if replaces[k] {
			resp.Replaces = append(resp.Replaces, k)
			d := resp.DetailedDiff[k]
			d.Kind += pulumirpc.PropertyDiff_ADD_REPLACE - pulumirpc.PropertyDiff_ADD
		}
	}
	// As the Terraform bridge decides it: a resource whose name the program
	// set (not a default from auto-naming) cannot exist twice under that
	// name, so its replacement deletes first. A namePrefix never collides.
	if len(resp.Replaces) > 0 && autonamed {
		resp.DeleteBeforeReplace = namedExplicitly(news)
	}
	return resp, nil
}

// namedExplicitly: the inputs carry a `name` that no default filled in.
func namedExplicitly(inputs resource.PropertyMap) bool {
	if _, ok := inputs["name"]; !ok {
		return false
	}
	if defaults, ok := inputs["__defaults"]; ok && defaults.IsArray() {
		for _, d := range defaults.ArrayValue() {
			if d.IsString() && d.StringValue() == "name" {
				return false
			}
		}
	}
	return true
}

// diff compares old and new inputs, top-level property by property; a
// change is an update in place unless the facts say otherwise (diffRequest).
func diff(olds, news resource.PropertyMap) *pulumirpc.DiffResponse {
	keys := map[resource.PropertyKey]bool{}
	for k := range olds {
		keys[k] = true
	}
	for k := range news {
		keys[k] = true
	}
	resp := &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE, HasDetailedDiff: true, DetailedDiff: map[string]*pulumirpc.PropertyDiff{}}
	for k := range keys {
		if len(k) > 1 && k[0] == '_' && k[1] == '_' {
			continue
		}
		old, hadOld := olds[k]
		nu, hasNew := news[k]
		var kind pulumirpc.PropertyDiff_Kind
		switch {
		case !hadOld && hasNew:
			kind = pulumirpc.PropertyDiff_ADD
		case hadOld && !hasNew:
			kind = pulumirpc.PropertyDiff_DELETE
		case nu.ContainsUnknowns() || !old.DeepEquals(nu):
			kind = pulumirpc.PropertyDiff_UPDATE
		default:
			continue
		}
		resp.Diffs = append(resp.Diffs, string(k))
		resp.DetailedDiff[string(k)] = &pulumirpc.PropertyDiff{Kind: kind, InputDiff: true}
	}
	sort.Strings(resp.Diffs)
	if len(resp.Diffs) > 0 {
		resp.Changes = pulumirpc.DiffResponse_DIFF_SOME
	}
	return resp
}
