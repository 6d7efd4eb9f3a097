package main

// The resource-provider protocol, answered the way pulumi-aws answers it
// where the engine and the YAML host look, with no call to AWS.

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// Version is the pulumi-aws version the double plays.
const Version = "7.51.1"

// Provider is the double. subset is nil (and loadErr set) when the schema
// subset could not be read: every call then fails with that error.
type Provider struct {
	pulumirpc.UnimplementedResourceProviderServer
	subset  *Subset
	facts   *Facts
	loadErr error
	journal *Journal

	mu     sync.Mutex
	region string
	// zones are the hosted zones getZone answered (id → name): a record
	// outside its zone is refused as Route 53 refuses it.
	zones map[string]string
}

// NewProvider reads the subset and opens the journal named by the environment.
func NewProvider() *Provider {
	journal := &Journal{path: os.Getenv("AWS_DOUBLE_JOURNAL")}
	subset, err := LoadSubset()
	if err != nil {
		return &Provider{loadErr: err, journal: journal, zones: map[string]string{}}
	}
	facts, err := LoadFacts()
	return &Provider{subset: subset, facts: facts, loadErr: err, journal: journal, zones: map[string]string{}}
}

var opts = plugin.MarshalOptions{KeepUnknowns: true, KeepSecrets: true, KeepResources: true, KeepOutputValues: true}

func unmarshal(s *structpb.Struct) (resource.PropertyMap, error) {
	if s == nil {
		return resource.PropertyMap{}, nil
	}
	m, err := plugin.UnmarshalProperties(s, opts)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "aws double: unreadable properties: %v", err)
	}
	return m, nil
}

func marshal(m resource.PropertyMap) (*structpb.Struct, error) {
	return plugin.MarshalProperties(m, opts)
}

func (p *Provider) ready() error {
	if p.loadErr != nil {
		return status.Error(codes.FailedPrecondition, "aws double: "+p.loadErr.Error())
	}
	return nil
}

func (p *Provider) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: Version}, nil
}

func (p *Provider) GetSchema(_ context.Context, req *pulumirpc.GetSchemaRequest) (*pulumirpc.GetSchemaResponse, error) {
	p.journal.Record(Entry{Call: "GetSchema"})
	if err := p.ready(); err != nil {
		return nil, err
	}
	schema, err := PackageSchema(p.subset)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "aws double: rendering the schema: %v", err)
	}
	return &pulumirpc.GetSchemaResponse{Schema: string(schema)}, nil
}

func (p *Provider) CheckConfig(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
}

func (p *Provider) DiffConfig(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	return diffRequest(req, nil, false)
}

// Configure takes the provider's region: `aws:region` in the stack's config.
func (p *Provider) Configure(_ context.Context, req *pulumirpc.ConfigureRequest) (*pulumirpc.ConfigureResponse, error) {
	args, err := unmarshal(req.GetArgs())
	if err != nil {
		return nil, err
	}
	region := str(args, "region")
	if region == "" {
		region = req.GetVariables()["aws:config:region"]
	}
	if region == "" {
		region = os.Getenv("AWS_REGION")
	}
	p.journal.Record(Entry{Call: "Configure", Region: region})
	if region == "" {
		return nil, status.Error(codes.InvalidArgument,
			"aws double: no region: set aws:region in the stack's config (as pulumi-aws requires)")
	}
	p.mu.Lock()
	p.region = region
	p.mu.Unlock()
	return &pulumirpc.ConfigureResponse{AcceptSecrets: true, AcceptResources: true, SupportsPreview: true}, nil
}

// regionOf is a resource's own region: its `region` input, else the provider's.
func (p *Provider) regionOf(inputs resource.PropertyMap) string {
	if r := str(inputs, "region"); r != "" {
		return r
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.region
}

func (p *Provider) Check(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	if err := p.ready(); err != nil {
		return nil, err
	}
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	entry := Entry{Call: "Check", Type: req.GetType(), Name: req.GetName(), URN: req.GetUrn(), Inputs: Plain(news)}
	sig, ok := p.subset.Resources[req.GetType()]
	if !ok {
		entry.Error = "unknown resource type"
		p.journal.Record(entry)
		return nil, status.Errorf(codes.InvalidArgument,
			"aws double: %s is not a resource type of the pulumi-aws %s subset this project uses", req.GetType(), Version)
	}
	failures := append(p.subset.CheckInputs(sig.Inputs, news), p.facts.CheckValues(req.GetType(), news)...)
	// Auto-naming, as pulumi-aws does: a resource with an optional name that
	// has none gets `<logical name>-<7 hex>`, the same for the same URN —
	// unless it has a `namePrefix`, which AWS's side completes (Describe).
	if prop, named := sig.Inputs["name"]; named && !prop.Required {
		_, has := news["name"]
		if str(news, "namePrefix") == "" && !has {
			news["name"] = resource.NewStringProperty(req.GetName() + "-" + token(req.GetUrn(), "autoname", 7, hexd))
			// As the bridge records it: the name came from a default, so a
			// replacement need not delete the old resource first (Diff).
			news["__defaults"] = resource.NewArrayProperty([]resource.PropertyValue{resource.NewStringProperty("name")})
		}
	}
	resp := &pulumirpc.CheckResponse{}
	for _, f := range failures {
		resp.Failures = append(resp.Failures, &pulumirpc.CheckFailure{Property: f.Path, Reason: f.Reason})
		entry.Diffs = append(entry.Diffs, f.Reason)
	}
	p.journal.Record(entry)
	if resp.Inputs, err = marshal(news); err != nil {
		return nil, err
	}
	return resp, nil
}

func (p *Provider) Diff(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	if err := p.ready(); err != nil {
		return nil, err
	}
	// Only a name pulumi-aws would auto-name (an optional `name`) can make a
	// replacement delete first; a required one is the program's by nature.
	prop, nameable := p.subset.Resources[req.GetType()].Inputs["name"]
	resp, err := diffRequest(req, p.facts.Replaces(req.GetType()), nameable && !prop.Required)
	if err != nil {
		return nil, err
	}
	p.journal.Record(Entry{Call: "Diff", Type: req.GetType(), Name: req.GetName(), URN: req.GetUrn(), ID: req.GetId(),
		Diffs: resp.Diffs, Replaces: resp.Replaces, DeleteBeforeReplace: resp.DeleteBeforeReplace})
	return resp, nil
}

// outputs are the inputs plus what AWS computes; in a preview the computed
// values are not known yet, as with the real provider.
func (p *Provider) outputs(typ, urn string, inputs resource.PropertyMap, preview bool) (string, string, resource.PropertyMap) {
	region := p.regionOf(inputs)
	created := Describe(typ, urn, region, inputs)
	out := inputs.Copy()
	for k := range out {
		if len(k) > 1 && k[0] == '_' && k[1] == '_' {
			delete(out, k)
		}
	}
	declared := p.subset.Resources[typ].Outputs
	for k, v := range created.Computed {
		// Only what pulumi-aws declares as an output of this type.
		if _, ok := declared[string(k)]; !ok {
			continue
		}
		if preview && k != "region" {
			if _, given := inputs[k]; !given {
				v = resource.MakeComputed(resource.NewStringProperty(""))
			}
		}
		out[k] = v
	}
	// Like the Terraform bridge, report every declared output: one that is
	// not set is null (not yet known in a preview), never missing, so a
	// program reading it sees a settled value and a second preview is clean.
	for name := range declared {
		k := resource.PropertyKey(name)
		if _, ok := out[k]; ok || name == "id" || name == "urn" {
			continue
		}
		if preview {
			out[k] = resource.MakeComputed(resource.NewStringProperty(""))
		} else {
			out[k] = resource.NewNullProperty()
		}
	}
	return created.ID, region, out
}

func (p *Provider) Create(_ context.Context, req *pulumirpc.CreateRequest) (*pulumirpc.CreateResponse, error) {
	if err := p.ready(); err != nil {
		return nil, err
	}
	inputs, err := unmarshal(req.GetProperties())
	if err != nil {
		return nil, err
	}
	if err := p.inZone(req.GetType(), inputs); err != nil {
		p.journal.Record(Entry{Call: "Create", Type: req.GetType(), Name: req.GetName(), URN: req.GetUrn(),
			Preview: req.GetPreview(), Inputs: Plain(inputs), Error: err.Error()})
		return nil, status.Error(codes.Unknown, err.Error())
	}
	id, region, out := p.outputs(req.GetType(), req.GetUrn(), inputs, req.GetPreview())
	p.journal.Record(Entry{Call: "Create", Type: req.GetType(), Name: req.GetName(), URN: req.GetUrn(), ID: id,
		Region: region, Preview: req.GetPreview(), Inputs: Plain(inputs), Outputs: Plain(out)})
	props, err := marshal(out)
	if err != nil {
		return nil, err
	}
	if req.GetPreview() {
		id = ""
	}
	return &pulumirpc.CreateResponse{Id: id, Properties: props}, nil
}

// inZone refuses a Route 53 record whose name is not in the hosted zone it
// is created in, in Route 53's words (the zone known from getZone; a name not
// yet known, in a preview, is not checked).
func (p *Provider) inZone(typ string, inputs resource.PropertyMap) error {
	if typ != "aws:route53/record:Record" {
		return nil
	}
	p.mu.Lock()
	zone, known := p.zones[str(inputs, "zoneId")]
	p.mu.Unlock()
	name := strings.ToLower(strings.TrimSuffix(str(inputs, "name"), "."))
	if !known || name == "" || name == zone || strings.HasSuffix(name, "."+zone) {
		return nil
	}
	return fmt.Errorf("creating Route53 Record: InvalidChangeBatch: [RRSet with DNS name %s. is not permitted in zone %s.]", name, zone)
}

func (p *Provider) Update(_ context.Context, req *pulumirpc.UpdateRequest) (*pulumirpc.UpdateResponse, error) {
	if err := p.ready(); err != nil {
		return nil, err
	}
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	olds, err := unmarshal(req.GetOldInputs())
	if err != nil {
		return nil, err
	}
	_, region, out := p.outputs(req.GetType(), req.GetUrn(), news, req.GetPreview())
	p.journal.Record(Entry{Call: "Update", Type: req.GetType(), Name: req.GetName(), URN: req.GetUrn(), ID: req.GetId(),
		Region: region, Preview: req.GetPreview(), Inputs: Plain(news), Outputs: Plain(out), Diffs: diff(olds, news).Diffs})
	props, err := marshal(out)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.UpdateResponse{Properties: props}, nil
}

func (p *Provider) Delete(_ context.Context, req *pulumirpc.DeleteRequest) (*emptypb.Empty, error) {
	props, err := unmarshal(req.GetProperties())
	if err != nil {
		return nil, err
	}
	p.journal.Record(Entry{Call: "Delete", Type: req.GetType(), Name: req.GetName(), URN: req.GetUrn(), ID: req.GetId(),
		Region: str(props, "region")})
	return &emptypb.Empty{}, nil
}

// Read (refresh, import) reports the resource as the state has it: the
// double's cloud never drifts.
func (p *Provider) Read(_ context.Context, req *pulumirpc.ReadRequest) (*pulumirpc.ReadResponse, error) {
	p.journal.Record(Entry{Call: "Read", Type: req.GetType(), Name: req.GetName(), URN: req.GetUrn(), ID: req.GetId()})
	if req.GetProperties() == nil {
		return nil, status.Errorf(codes.NotFound, "aws double: %s %s cannot be imported: the double has no cloud to read", req.GetType(), req.GetId())
	}
	return &pulumirpc.ReadResponse{Id: req.GetId(), Properties: req.GetProperties(), Inputs: req.GetInputs()}, nil
}

func (p *Provider) Invoke(_ context.Context, req *pulumirpc.InvokeRequest) (*pulumirpc.InvokeResponse, error) {
	if err := p.ready(); err != nil {
		return nil, err
	}
	args, err := unmarshal(req.GetArgs())
	if err != nil {
		return nil, err
	}
	entry := Entry{Call: "Invoke", Type: req.GetTok(), Inputs: Plain(args)}
	sig, ok := p.subset.Functions[req.GetTok()]
	if !ok {
		entry.Error = "unknown function"
		p.journal.Record(entry)
		return nil, status.Errorf(codes.InvalidArgument,
			"aws double: %s is not a function of the pulumi-aws %s subset this project uses", req.GetTok(), Version)
	}
	resp := &pulumirpc.InvokeResponse{}
	for _, f := range p.subset.CheckInputs(sig.Inputs, args) {
		resp.Failures = append(resp.Failures, &pulumirpc.CheckFailure{Property: f.Path, Reason: f.Reason})
	}
	if len(resp.Failures) > 0 {
		entry.Error = "invalid arguments"
		p.journal.Record(entry)
		return resp, nil
	}
	result, err := p.answer(req.GetTok(), args)
	if err != nil {
		entry.Error = err.Error()
		p.journal.Record(entry)
		return nil, status.Error(codes.Unknown, fmt.Sprintf("invoking %s: %v", req.GetTok(), err))
	}
	entry.Outputs = Plain(result)
	p.journal.Record(entry)
	if resp.Return, err = marshal(result); err != nil {
		return nil, err
	}
	return resp, nil
}
