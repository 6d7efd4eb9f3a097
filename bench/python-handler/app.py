"""The AWS sample's WebSocket handler, for the benchmarks' Python row.

What the sample "Protecting WebSocket API with CloudFront and WAF Integration"
deploys: print the event, route on requestContext.routeKey, answer 200, and
echo the event for any other route. Run locally by awslambdaric
(`python -m awslambdaric app.handler`) under the same Lambda Runtime API as
the Rust functions.
"""

import json


def handler(event, context):
    print(json.dumps(event))
    route_key = event.get("requestContext", {}).get("routeKey")
    if route_key == "$connect":
        return {"statusCode": 200, "body": "Connected."}
    if route_key == "$disconnect":
        return {"statusCode": 200, "body": "Disconnected."}
    return {"statusCode": 200, "body": json.dumps(event)}
