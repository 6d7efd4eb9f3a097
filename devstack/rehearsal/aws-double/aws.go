package main

// What AWS would answer for a created resource: its id and the computed
// outputs in AWS's own formats (ARNs carrying the resource's region, a
// d….cloudfront.net domain, execute-api endpoints, the API key's value),
// derived from the resource's URN so repeated runs give the same answers.

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

// Account is the AWS account the double plays.
const Account = "123456789012"

// Created is a resource as AWS reports it.
type Created struct {
	ID       string
	Computed resource.PropertyMap
}

// token picks n characters from alphabet, determined by seed.
func token(seed, salt string, n int, alphabet string) string {
	var out strings.Builder
	for i := 0; out.Len() < n; i++ {
		sum := sha256.Sum256([]byte(fmt.Sprintf("%s|%s|%d", seed, salt, i)))
		for _, b := range sum {
			if out.Len() == n {
				break
			}
			out.WriteByte(alphabet[int(b)%len(alphabet)])
		}
	}
	return out.String()
}

const (
	lower = "abcdefghijklmnopqrstuvwxyz0123456789"
	upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	hexd  = "0123456789abcdef"
)

// str reads a string input ("" when absent or not yet known).
func str(inputs resource.PropertyMap, key string) string {
	v, ok := inputs[resource.PropertyKey(key)]
	for ok && v.IsSecret() {
		v = v.SecretValue().Element
	}
	if !ok || !v.IsString() {
		return ""
	}
	return v.StringValue()
}

// Describe computes a resource's id and outputs as AWS would report them.
func Describe(typ, urn, region string, inputs resource.PropertyMap) Created {
	name := str(inputs, "name")
	out := resource.PropertyMap{}
	set := func(key, value string) { out[resource.PropertyKey(key)] = resource.NewStringProperty(value) }
	if prefix := str(inputs, "namePrefix"); name == "" && prefix != "" {
		// Terraform's PrefixedUniqueId: the prefix, a UTC timestamp to the
		// 10⁻⁴ s and an 8-hex counter (here derived from the URN).
		name = prefix + token(urn, "stamp", 18, "0123456789") + token(urn, "counter", 8, hexd)
		set("name", name)
	}
	arn := func(service, rest string) string {
		return fmt.Sprintf("arn:aws:%s:%s:%s:%s", service, region, Account, rest)
	}
	id := name
	switch typ {
	case "aws:dynamodb/table:Table":
		set("arn", arn("dynamodb", "table/"+name))
	case "aws:cloudwatch/logGroup:LogGroup":
		set("arn", arn("logs", "log-group:"+name))
	case "aws:iam/role:Role":
		set("arn", fmt.Sprintf("arn:aws:iam::%s:role/%s", Account, name))
		set("uniqueId", "AROA"+token(urn, "unique", 17, upper))
	case "aws:iam/rolePolicy:RolePolicy":
		id = str(inputs, "role") + ":" + name
	case "aws:lambda/function:Function":
		fn := arn("lambda", "function:"+name)
		set("arn", fn)
		set("qualifiedArn", fn+":$LATEST")
		set("version", "$LATEST")
		set("invokeArn", fmt.Sprintf("arn:aws:apigateway:%s:lambda:path/2015-03-31/functions/%s/invocations", region, fn))
		set("qualifiedInvokeArn", fmt.Sprintf("arn:aws:apigateway:%s:lambda:path/2015-03-31/functions/%s/invocations", region, fn+":$LATEST"))
		if code, ok := inputs["code"]; ok && code.IsArchive() {
			set("sourceCodeHash", archiveHash(code.ArchiveValue()))
		}
	case "aws:lambda/permission:Permission":
		id = "terraform-" + token(urn, "statement", 26, "0123456789")
		set("statementId", id)
	case "aws:apigatewayv2/api:Api":
		id = token(urn, "id", 10, lower)
		set("apiEndpoint", fmt.Sprintf("wss://%s.execute-api.%s.amazonaws.com", id, region))
		set("arn", fmt.Sprintf("arn:aws:apigateway:%s::/apis/%s", region, id))
		set("executionArn", arn("execute-api", id))
	case "aws:apigatewayv2/integration:Integration", "aws:apigatewayv2/route:Route":
		id = token(urn, "id", 7, lower)
	case "aws:apigatewayv2/authorizer:Authorizer":
		// API Gateway's authorizer ids: six characters; no ARN of its own
		// (permissions name it as <api executionArn>/authorizers/<id>).
		id = token(urn, "id", 6, lower)
	case "aws:apigatewayv2/deployment:Deployment", "aws:apigateway/usagePlan:UsagePlan":
		id = token(urn, "id", 6, lower)
		if typ == "aws:apigateway/usagePlan:UsagePlan" {
			set("arn", fmt.Sprintf("arn:aws:apigateway:%s::/usageplans/%s", region, id))
		}
	case "aws:apigatewayv2/stage:Stage":
		api := str(inputs, "apiId")
		set("arn", fmt.Sprintf("arn:aws:apigateway:%s::/apis/%s/stages/%s", region, api, name))
		set("executionArn", arn("execute-api", api+"/"+name))
		set("invokeUrl", fmt.Sprintf("wss://%s.execute-api.%s.amazonaws.com/%s", api, region, name))
	case "aws:apigateway/apiKey:ApiKey":
		id = token(urn, "id", 10, lower)
		set("arn", fmt.Sprintf("arn:aws:apigateway:%s::/apikeys/%s", region, id))
		if str(inputs, "value") == "" {
			out["value"] = resource.MakeSecret(resource.NewStringProperty(token(urn, "value", 40, alnum)))
		}
	case "aws:apigateway/usagePlanKey:UsagePlanKey":
		id = str(inputs, "keyId")
	case "aws:wafv2/webAcl:WebAcl":
		id = uuid(urn)
		scope := "regional"
		if str(inputs, "scope") == "CLOUDFRONT" {
			scope = "global"
		}
		set("arn", arn("wafv2", fmt.Sprintf("%s/webacl/%s/%s", scope, name, id)))
		set("lockToken", uuid(urn+"lock"))
		out["capacity"] = resource.NewNumberProperty(1000)
	case "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration":
		id = str(inputs, "resourceArn")
	case "aws:cloudfront/distribution:Distribution":
		id = "E" + token(urn, "id", 13, upper)
		set("arn", fmt.Sprintf("arn:aws:cloudfront::%s:distribution/%s", Account, id))
		set("domainName", "d"+token(urn, "domain", 13, lower)+".cloudfront.net")
		set("hostedZoneId", "Z2FDTNDATAQYW2")
		set("status", "Deployed")
		set("etag", "E"+token(urn, "etag", 13, upper))
	case "aws:sns/topic:Topic":
		set("arn", arn("sns", name))
		id = arn("sns", name)
	case "aws:sqs/queue:Queue":
		// Terraform's id for a queue is its URL.
		set("arn", arn("sqs", name))
		id = fmt.Sprintf("https://sqs.%s.amazonaws.com/%s/%s", region, Account, name)
		set("url", id)
	case "aws:cloudwatch/metricAlarm:MetricAlarm":
		set("arn", arn("cloudwatch", "alarm:"+name))
	case "aws:acm/certificate:Certificate":
		// An Amazon-issued certificate asked for DNS validation: one CNAME
		// challenge per name (domainName, then each SAN), as ACM states them.
		id = arn("acm", "certificate/"+uuid(urn))
		set("arn", id)
		set("status", "PENDING_VALIDATION")
		set("type", "AMAZON_ISSUED")
		set("keyAlgorithm", "RSA_2048")
		set("renewalEligibility", "INELIGIBLE")
		names := []string{str(inputs, "domainName")}
		if sans, ok := inputs["subjectAlternativeNames"]; ok && sans.IsArray() {
			for _, san := range sans.ArrayValue() {
				if san.IsString() && san.StringValue() != names[0] {
					names = append(names, san.StringValue())
				}
			}
		}
		options := []resource.PropertyValue{}
		for _, name := range names {
			options = append(options, resource.NewObjectProperty(acmChallenge(id, name)))
		}
		out["domainValidationOptions"] = resource.NewArrayProperty(options)
	case "aws:acm/certificateValidation:CertificateValidation":
		// Terraform's id is the time of issue; the ARN is what it passes on.
		id = str(inputs, "certificateArn")
	case "aws:route53/record:Record":
		// Terraform's id: <zone>_<name>_<type>, the name lower-case without
		// its final dot (the provider's StateFunc), as is the fqdn.
		fqdn := strings.ToLower(strings.TrimSuffix(name, "."))
		id = strings.Join([]string{str(inputs, "zoneId"), fqdn, str(inputs, "type")}, "_")
		set("fqdn", fqdn)
	case "aws:cloudwatch/dashboard:Dashboard":
		name = str(inputs, "dashboardName")
		id = name
		set("dashboardArn", fmt.Sprintf("arn:aws:cloudwatch::%s:dashboard/%s", Account, name))
	default:
		// A type this table does not know: an ARN in the common shape
		// arn:aws:<module>:<region>:<account>:<type>/<name or id>.
		if id == "" {
			id = token(urn, "id", 12, lower)
		}
		module, kind := typeParts(typ)
		set("arn", arn(module, kind+"/"+id))
	}
	if id == "" {
		id = token(urn, "id", 12, lower)
	}
	set("region", region)
	if tags, ok := inputs["tags"]; ok {
		out["tagsAll"] = tags
	} else {
		out["tagsAll"] = resource.NewObjectProperty(resource.PropertyMap{})
	}
	return Created{ID: id, Computed: out}
}

// acmChallenge is ACM's DNS challenge for one name of a certificate:
// `_<32 hex>.<name>.` CNAME `_<32 hex>.<10 letters>.acm-validations.aws.`,
// the wildcard's `*.` dropped (`*.example.com` is proven at example.com).
func acmChallenge(certificate, name string) resource.PropertyMap {
	base := strings.TrimPrefix(name, "*.")
	s := resource.NewStringProperty
	return resource.PropertyMap{
		"domainName":          s(name),
		"resourceRecordName":  s("_" + token(certificate+base, "challenge", 32, hexd) + "." + base + "."),
		"resourceRecordType":  s("CNAME"),
		"resourceRecordValue": s("_" + token(certificate+base, "answer", 32, hexd) + "." + token(base, "validator", 10, "abcdefghijklmnopqrstuvwxyz") + ".acm-validations.aws."),
	}
}

// typeParts splits `aws:cloudwatch/logResourcePolicy:LogResourcePolicy`
// into `cloudwatch` and `logResourcePolicy`.
func typeParts(typ string) (string, string) {
	parts := strings.Split(typ, ":")
	if len(parts) != 3 {
		return "unknown", typ
	}
	module, kind, _ := strings.Cut(parts[1], "/")
	return module, kind
}

func uuid(seed string) string {
	h := token(seed, "uuid", 32, hexd)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// archiveHash is Lambda's CodeSha256 in spirit: base64 of the archive's hash.
func archiveHash(a *resource.Archive) string {
	raw, err := hex.DecodeString(a.Hash)
	if err != nil || len(raw) == 0 {
		return ""
	}
	return base64.StdEncoding.EncodeToString(raw)
}
