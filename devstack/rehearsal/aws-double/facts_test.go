package main

import (
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

func loadFacts(t *testing.T) *Facts {
	t.Helper()
	t.Setenv("AWS_DOUBLE_FACTS", "../../../crates/pulumi-program/facts/pulumi-aws-7.51.1.facts.json")
	facts, err := LoadFacts()
	if err != nil {
		t.Fatal(err)
	}
	return facts
}

func TestFactsRefuseWhatTheValidatorsRefuse(t *testing.T) {
	f := loadFacts(t)
	cases := []struct {
		typ    string
		inputs map[string]any
		want   string
	}{
		{"aws:apigatewayv2/api:Api", map[string]any{"protocolType": "WEBSOCKETS"},
			`protocolType: expected protocolType to be one of ["HTTP" "WEBSOCKET"], got WEBSOCKETS`},
		{"aws:wafv2/webAcl:WebAcl", map[string]any{"scope": "GLOBAL"},
			`scope: expected scope to be one of ["CLOUDFRONT" "REGIONAL"], got GLOBAL`},
		{"aws:wafv2/webAcl:WebAcl", map[string]any{"rules": []any{map[string]any{"name": ""}}},
			`rules[0].name: expected length of rules[0].name to be in the range (1 - 128), got `},
		{"aws:lambda/function:Function", map[string]any{"timeout": 901},
			`timeout: expected timeout to be in the range (1 - 900), got 901`},
		{"aws:iam/role:Role", map[string]any{"namePrefix": "a b"},
			`namePrefix: invalid value for namePrefix (must match ^[\w+=,.@-]*$), got a b`},
		// What the provider accepts passes; a type without facts is not checked.
		{"aws:apigatewayv2/api:Api", map[string]any{"protocolType": "WEBSOCKET", "name": "api"}, ""},
		{"aws:lambda/function:Function", map[string]any{"runtime": "provided.al2023", "architectures": []any{"arm64"}}, ""},
		{"aws:sns/topic:Topic", map[string]any{"name": strings.Repeat("x", 1000)}, ""},
	}
	for _, c := range cases {
		var got []string
		for _, failure := range f.CheckValues(c.typ, resource.NewPropertyMapFromMap(c.inputs)) {
			got = append(got, failure.Path+": "+failure.Reason)
		}
		if strings.Join(got, "\n") != c.want {
			t.Errorf("%s %v: got %q, want %q", c.typ, c.inputs, got, c.want)
		}
	}
}

func diffOf(t *testing.T, typ string, olds, news map[string]any) *pulumirpc.DiffResponse {
	t.Helper()
	o, err := plugin.MarshalProperties(resource.NewPropertyMapFromMap(olds), opts)
	if err != nil {
		t.Fatal(err)
	}
	n, err := plugin.MarshalProperties(resource.NewPropertyMapFromMap(news), opts)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := diffRequest(&pulumirpc.DiffRequest{OldInputs: o, News: n}, loadFacts(t).Replaces(typ))
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestDiffReplacesWhereTheProviderForcesNew(t *testing.T) {
	const table = "aws:dynamodb/table:Table"
	renamed := diffOf(t, table, map[string]any{"name": "a", "billingMode": "PAY_PER_REQUEST"}, map[string]any{"name": "b", "billingMode": "PAY_PER_REQUEST"})
	if strings.Join(renamed.Replaces, ",") != "name" || !renamed.DeleteBeforeReplace ||
		renamed.DetailedDiff["name"].Kind != pulumirpc.PropertyDiff_UPDATE_REPLACE {
		t.Errorf("renaming a table: replaces %v, deleteBeforeReplace %v, kind %v", renamed.Replaces, renamed.DeleteBeforeReplace, renamed.DetailedDiff["name"].Kind)
	}
	billing := diffOf(t, table, map[string]any{"name": "a", "billingMode": "PAY_PER_REQUEST"}, map[string]any{"name": "a", "billingMode": "PROVISIONED"})
	if len(billing.Replaces) != 0 || billing.Changes != pulumirpc.DiffResponse_DIFF_SOME {
		t.Errorf("billingMode is updated in place, got replaces %v", billing.Replaces)
	}
	const role = "aws:iam/role:Role"
	prefixed := diffOf(t, role, map[string]any{"namePrefix": "a-"}, map[string]any{"namePrefix": "b-"})
	if strings.Join(prefixed.Replaces, ",") != "namePrefix" || prefixed.DeleteBeforeReplace {
		t.Errorf("a new namePrefix replaces, creating first: replaces %v, deleteBeforeReplace %v", prefixed.Replaces, prefixed.DeleteBeforeReplace)
	}
	autonamed := diffOf(t, table, map[string]any{"name": "t-1", "__defaults": []any{"name"}, "hashKey": "a"},
		map[string]any{"name": "t-1", "__defaults": []any{"name"}, "hashKey": "b"})
	if strings.Join(autonamed.Replaces, ",") != "hashKey" || autonamed.DeleteBeforeReplace {
		t.Errorf("an auto-named table replaced: replaces %v, deleteBeforeReplace %v", autonamed.Replaces, autonamed.DeleteBeforeReplace)
	}
}
