package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

func loadSubset(t *testing.T) *Subset {
	t.Helper()
	t.Setenv("AWS_DOUBLE_SCHEMA", "../../../crates/pulumi-program/schema/pulumi-aws-7.51.1.json")
	subset, err := LoadSubset()
	if err != nil {
		t.Fatal(err)
	}
	return subset
}

func failures(t *testing.T, typ string, inputs resource.PropertyMap) string {
	t.Helper()
	s := loadSubset(t)
	var out []string
	for _, f := range s.CheckInputs(s.Resources[typ].Inputs, inputs) {
		out = append(out, f.Path+": "+f.Reason)
	}
	return strings.Join(out, "\n")
}

func route(extra map[string]any) resource.PropertyMap {
	m := map[string]any{"apiId": "abc", "routeKey": "$connect"}
	for k, v := range extra {
		m[k] = v
	}
	return resource.NewPropertyMapFromMap(m)
}

func TestCheckRefusesWhatTheProviderRefuses(t *testing.T) {
	const typ = "aws:apigatewayv2/route:Route"
	if got := failures(t, typ, route(nil)); got != "" {
		t.Fatalf("a valid route was refused: %s", got)
	}
	cases := map[string]struct {
		inputs resource.PropertyMap
		want   string
	}{
		"unknown property": {route(map[string]any{"routeKye": "x"}), "routeKye is not a property"},
		"missing required": {resource.NewPropertyMapFromMap(map[string]any{"apiId": "abc"}), "routeKey: Missing required argument"},
		"wrong type":       {route(map[string]any{"apiKeyRequired": "maybe"}), "apiKeyRequired: expected a boolean"},
		"nested path": {resource.NewPropertyMapFromMap(map[string]any{
			"apiId": "a", "routeKey": "k", "requestParameters": []any{map[string]any{"requestParameterKey": "q", "requird": true}},
		}), "requestParameters[0].requird is not a property"},
	}
	for name, c := range cases {
		if got := failures(t, typ, c.inputs); !strings.Contains(got, c.want) {
			t.Errorf("%s: got %q, want it to contain %q", name, got, c.want)
		}
	}
	// The bridge's coercions: a numeric string is an integer, unknowns and secrets are looked through.
	acl := resource.NewPropertyMapFromMap(map[string]any{"burstLimit": "10", "rateLimit": 2.5})
	s := loadSubset(t)
	if got := s.CheckInputs(s.Types["apigateway.UsagePlanThrottleSettingsArgs"], acl); len(got) != 0 {
		t.Errorf("numeric strings were refused: %v", got)
	}
	secret := route(map[string]any{"apiKeyRequired": resource.MakeSecret(resource.NewStringProperty("nope"))})
	if got := failures(t, typ, secret); !strings.Contains(got, "expected a boolean") {
		t.Errorf("a wrong value inside a secret passed: %q", got)
	}
}

func TestSchemaServesEveryTypeOfTheSubset(t *testing.T) {
	s := loadSubset(t)
	raw, err := PackageSchema(s)
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Version   string                     `json:"version"`
		Resources map[string]json.RawMessage `json:"resources"`
		Functions map[string]json.RawMessage `json:"functions"`
		Types     map[string]json.RawMessage `json:"types"`
	}
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	if schema.Version != "7.51.1" || len(schema.Resources) != len(s.Resources) ||
		len(schema.Functions) != len(s.Functions) || len(schema.Types) != len(s.Types) {
		t.Fatalf("schema %s has %d/%d/%d resources/functions/types, the subset %d/%d/%d", schema.Version,
			len(schema.Resources), len(schema.Functions), len(schema.Types), len(s.Resources), len(s.Functions), len(s.Types))
	}
	// Every $ref points at a type the schema defines.
	for _, ref := range strings.Split(string(raw), `"$ref":"#/types/`)[1:] {
		token := ref[:strings.IndexByte(ref, '"')]
		if _, ok := schema.Types[token]; !ok {
			t.Errorf("dangling reference to %s", token)
		}
	}
	if typeToken("lambda_.FunctionEnvironmentArgs") != "aws:lambda/FunctionEnvironment:FunctionEnvironment" {
		t.Error("python module names are not mapped to schema tokens")
	}
}

func TestDescribeAnswersInAWSFormats(t *testing.T) {
	const urn = "urn:pulumi:dev::websocket-waf::aws:cloudfront/distribution:Distribution::distribution"
	d := Describe("aws:cloudfront/distribution:Distribution", urn, "eu-west-1", resource.PropertyMap{})
	domain := d.Computed["domainName"].StringValue()
	if !strings.HasPrefix(domain, "d") || !strings.HasSuffix(domain, ".cloudfront.net") || len(domain) != 29 {
		t.Errorf("domain %q is not d….cloudfront.net", domain)
	}
	if again := Describe("aws:cloudfront/distribution:Distribution", urn, "eu-west-1", resource.PropertyMap{}); again.ID != d.ID {
		t.Error("the same resource got two ids")
	}
	prefixed := Describe("aws:iam/role:Role", "urn:x::role", "eu-west-1",
		resource.NewPropertyMapFromMap(map[string]any{"namePrefix": "p-"}))
	if name := prefixed.Computed["name"].StringValue(); !strings.HasPrefix(name, "p-") || len(name) != 2+26 {
		t.Errorf("a namePrefix gave the name %q, not p-<26 characters>", name)
	}
	acl := Describe("aws:wafv2/webAcl:WebAcl", "urn:x::acl", "us-east-1",
		resource.NewPropertyMapFromMap(map[string]any{"name": "n", "scope": "CLOUDFRONT"}))
	if arn := acl.Computed["arn"].StringValue(); !strings.HasPrefix(arn, "arn:aws:wafv2:us-east-1:123456789012:global/webacl/n/") {
		t.Errorf("web ACL arn %q", arn)
	}
	key := Describe("aws:apigateway/apiKey:ApiKey", "urn:x::key", "eu-west-1", resource.PropertyMap{})
	if !key.Computed["value"].IsSecret() {
		t.Error("the API key's value is not a secret")
	}
}

func TestAnAuthorizerHasAnApiGatewayIdAndNoArn(t *testing.T) {
	const urn = "urn:pulumi:dev::websocket-waf::aws:apigatewayv2/authorizer:Authorizer::connectAuthorizer"
	inputs := resource.NewPropertyMapFromMap(map[string]any{"apiId": "abc", "authorizerType": "REQUEST", "name": "websocket-waf-dev-connect"})
	got := Describe("aws:apigatewayv2/authorizer:Authorizer", urn, "eu-west-1", inputs)
	if len(got.ID) != 6 || got.ID == "websocket-waf-dev-connect" {
		t.Errorf("the authorizer's id is %q, not six characters as API Gateway's", got.ID)
	}
	if _, ok := got.Computed["arn"]; ok {
		t.Errorf("the authorizer got an arn output it does not have: %v", got.Computed)
	}
}

func TestACMChallengesOnePerNameAndRecordsStayInTheirZone(t *testing.T) {
	urn := "urn:pulumi:dev::websocket-waf-certificate::aws:acm/certificate:Certificate::certificate"
	created := Describe("aws:acm/certificate:Certificate", urn, "us-east-1", resource.NewPropertyMapFromMap(map[string]any{
		"domainName": "*.example.com", "subjectAlternativeNames": []any{"*.example.com", "chat.example.org"},
	}))
	if !strings.HasPrefix(created.ID, "arn:aws:acm:us-east-1:"+Account+":certificate/") {
		t.Fatalf("certificate ARN %s", created.ID)
	}
	options := created.Computed["domainValidationOptions"].ArrayValue()
	if len(options) != 2 {
		t.Fatalf("%d challenges for two distinct names", len(options))
	}
	first := options[0].ObjectValue()
	name := first["resourceRecordName"].StringValue()
	if first["domainName"].StringValue() != "*.example.com" || !strings.HasPrefix(name, "_") ||
		!strings.HasSuffix(name, ".example.com.") || strings.Contains(name, "*") ||
		first["resourceRecordType"].StringValue() != "CNAME" ||
		!strings.HasSuffix(first["resourceRecordValue"].StringValue(), ".acm-validations.aws.") {
		t.Fatalf("the wildcard's challenge: %v", first)
	}

	p := &Provider{zones: map[string]string{}}
	zone, err := p.answer("aws:route53/getZone:getZone", resource.NewPropertyMapFromMap(map[string]any{"name": "example.com."}))
	if err != nil {
		t.Fatal(err)
	}
	id := zone["zoneId"].StringValue()
	record := func(name string) resource.PropertyMap {
		return resource.NewPropertyMapFromMap(map[string]any{"zoneId": id, "name": name, "type": "CNAME"})
	}
	if err := p.inZone("aws:route53/record:Record", record(name)); err != nil {
		t.Fatalf("a record in its zone was refused: %v", err)
	}
	err = p.inZone("aws:route53/record:Record", record("_abc.chat.example.org."))
	if err == nil || !strings.Contains(err.Error(), "is not permitted in zone example.com.") {
		t.Fatalf("a record outside its zone: %v", err)
	}
	if _, err := p.answer("aws:route53/getZone:getZone", resource.PropertyMap{}); err == nil {
		t.Fatal("getZone without a name answered")
	}
}

func TestAnOutputObjectIsServedWithItsFields(t *testing.T) {
	schema, err := PackageSchema(loadSubset(t))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Resources map[string]struct {
			Properties map[string]map[string]any `json:"properties"`
		} `json:"resources"`
	}
	if err := json.Unmarshal(schema, &doc); err != nil {
		t.Fatal(err)
	}
	options := doc.Resources["aws:acm/certificate:Certificate"].Properties["domainValidationOptions"]
	items, _ := options["items"].(map[string]any)
	if items["$ref"] != "#/types/aws:acm/CertificateDomainValidationOption:CertificateDomainValidationOption" {
		t.Fatalf("domainValidationOptions is served as %v", options)
	}
}
