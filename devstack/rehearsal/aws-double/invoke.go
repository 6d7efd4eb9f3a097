package main

// The data sources the program calls, answered as AWS answers them.

import (
	"fmt"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

// AWS's managed CloudFront policies: published names and ids, the same in
// every account.
var managedCachePolicies = map[string]string{
	"Managed-CachingDisabled":  "4135ea2d-6df8-44a3-9df3-4b5a84be39ad",
	"Managed-CachingOptimized": "658327ea-f89d-4fab-a63d-7e88639e58f6",
}

var managedOriginRequestPolicies = map[string]string{
	"Managed-AllViewerExceptHostHeader": "b689b0a8-53d0-40ab-baf2-68738e2966ac",
	"Managed-AllViewer":                 "216adef6-5c7f-47e4-b989-5492eafa07d3",
}

func (p *Provider) answer(tok string, args resource.PropertyMap) (resource.PropertyMap, error) {
	s := resource.NewStringProperty
	switch tok {
	case "aws:index/getRegion:getRegion":
		region := p.regionOf(args)
		return resource.PropertyMap{
			"id": s(region), "name": s(region), "region": s(region),
			"endpoint":    s(fmt.Sprintf("ec2.%s.amazonaws.com", region)),
			"description": s(region),
		}, nil
	case "aws:index/getCallerIdentity:getCallerIdentity":
		return resource.PropertyMap{
			"id": s(Account), "accountId": s(Account),
			"arn":    s(fmt.Sprintf("arn:aws:iam::%s:user/rehearsal", Account)),
			"userId": s("AIDA" + token(Account, "user", 17, upper)),
		}, nil
	case "aws:index/getPartition:getPartition":
		return resource.PropertyMap{
			"id": s("aws"), "partition": s("aws"),
			"dnsSuffix": s("amazonaws.com"), "reverseDnsPrefix": s("com.amazonaws"),
		}, nil
	case "aws:route53/getZone:getZone":
		// Any public zone asked for by name exists in the double's account
		// (it has no DNS to look in); its id is stable per name.
		name := strings.TrimSuffix(str(args, "name"), ".")
		if name == "" {
			return nil, fmt.Errorf("the double finds a hosted zone by name only: no name given")
		}
		id := "Z" + token(name, "zone", 20, upper)
		p.mu.Lock()
		p.zones[id] = name
		p.mu.Unlock()
		servers := []resource.PropertyValue{}
		for i := range 4 {
			servers = append(servers, s(fmt.Sprintf("ns-%d.awsdns-%02d.net", 100+i, i)))
		}
		return resource.PropertyMap{
			"id": s(id), "zoneId": s(id), "name": s(name),
			"arn":         s("arn:aws:route53:::hostedzone/" + id),
			"privateZone": resource.NewBoolProperty(false), "comment": s(""),
			"callerReference":        s(token(name, "caller", 12, lower)),
			"nameServers":            resource.NewArrayProperty(servers),
			"primaryNameServer":      servers[0],
			"resourceRecordSetCount": resource.NewNumberProperty(2),
		}, nil
	case "aws:cloudfront/getCachePolicy:getCachePolicy":
		return byName(args, managedCachePolicies, "CloudFront Cache Policy")
	case "aws:cloudfront/getOriginRequestPolicy:getOriginRequestPolicy":
		return byName(args, managedOriginRequestPolicies, "CloudFront Origin Request Policy")
	}
	return nil, fmt.Errorf("the aws double does not answer %s", tok)
}

func byName(args resource.PropertyMap, known map[string]string, what string) (resource.PropertyMap, error) {
	name, id := str(args, "name"), str(args, "id")
	for n, i := range known {
		if n == name || i == id {
			return resource.PropertyMap{
				"id": resource.NewStringProperty(i), "name": resource.NewStringProperty(n),
				"etag": resource.NewStringProperty("E" + token(i, "etag", 13, upper)),
			}, nil
		}
	}
	// The Terraform provider's answer when the list call finds no match.
	return nil, fmt.Errorf("reading %s (%s): couldn't find resource", what, name)
}
