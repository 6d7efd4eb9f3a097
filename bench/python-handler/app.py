"""The AWS sample's WebSocket handler, for the benchmarks' Python row, doing
the same work as the Rust function for a `ping`.

What the sample "Protecting WebSocket API with CloudFront and WAF Integration"
deploys: print the event, route on requestContext.routeKey, answer 200, and
echo the event for any other route. So that the warm-invocation row compares
like with like, a `ping` is answered as websocket-handler answers it: a
`{"type":"pong"}` posted to the connection through the @connections
management API (MANAGEMENT_ENDPOINT), signed with SigV4 like the SDK signs,
over one kept-alive HTTP connection (the SDK's pool) — with the standard
library only, as a sample without dependencies would. Run locally by
awslambdaric (`python -m awslambdaric app.handler`) under the same Lambda
Runtime API as the Rust functions.
"""

import datetime
import hashlib
import hmac
import http.client
import json
import os
import urllib.parse

MANAGEMENT = os.environ.get("MANAGEMENT_ENDPOINT")
_connection = None


def _sigv4_headers(host, path, data):
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    region = os.environ.get("AWS_REGION", "us-east-1")
    scope = f"{day}/{region}/execute-api/aws4_request"
    payload = hashlib.sha256(data).hexdigest()
    canonical = "\n".join([
        "POST", urllib.parse.quote(path, safe="/~"), "",
        f"host:{host}", f"x-amz-date:{amz_date}", "",
        "host;x-amz-date", payload,
    ])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + os.environ.get("AWS_SECRET_ACCESS_KEY", "")).encode()
    for part in (day, region, "execute-api", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    credential = os.environ.get("AWS_ACCESS_KEY_ID", "") + "/" + scope
    return {
        "content-type": "application/json",
        "x-amz-date": amz_date,
        "authorization": f"AWS4-HMAC-SHA256 Credential={credential}, "
                         f"SignedHeaders=host;x-amz-date, Signature={signature}",
    }


def _post_to_connection(connection_id, body):
    global _connection
    endpoint = urllib.parse.urlsplit(MANAGEMENT)
    path = f"{endpoint.path}/@connections/{urllib.parse.quote(connection_id, safe='')}"
    data = json.dumps(body).encode()
    headers = _sigv4_headers(endpoint.netloc, path, data)
    for attempt in (1, 2):
        if _connection is None:
            _connection = http.client.HTTPConnection(endpoint.netloc, timeout=10)
        try:
            _connection.request("POST", path, body=data, headers=headers)
            response = _connection.getresponse()
            response.read()
            if response.status >= 300:
                raise RuntimeError(f"PostToConnection answered {response.status}")
            return
        except (http.client.HTTPException, OSError):
            # A kept-alive connection the server closed: one fresh try.
            _connection.close()
            _connection = None
            if attempt == 2:
                raise


def handler(event, context):
    print(json.dumps(event))
    request_context = event.get("requestContext", {})
    route_key = request_context.get("routeKey")
    if route_key == "$connect":
        return {"statusCode": 200, "body": "Connected."}
    if route_key == "$disconnect":
        return {"statusCode": 200, "body": "Disconnected."}
    if route_key == "ping" and MANAGEMENT:
        _post_to_connection(request_context["connectionId"], {"type": "pong"})
        return {"statusCode": 200}
    return {"statusCode": 200, "body": json.dumps(event)}
