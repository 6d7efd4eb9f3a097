//! The start-up banner: where the stack answers, the local key, and commands
//! to try.

use super::Stack;

impl Stack {
    /// The start-up banner: URLs, the local key, which of the program's
    /// resources the stack plays (alarms, dashboard, IAM... exist only when
    /// deployed), and commands to try.
    pub fn banner(&self) -> String {
        let e = &self.endpoints;
        let t = &self.topology;
        let key_header = &t.origin_api_key_header;
        format!(
            "\n\
             devstack: stack `{stack}` of {project} (region {region}), from the Pulumi program\n\
             \n\
             \x20 console (browser)            {console}\n\
             \x20 edge (CloudFront + WAF)      {edge}\n\
             \x20 API (execute-api, direct)    {api}   (needs the {key_header} header)\n\
             \x20 management (@connections)    {management}/@connections/{{connectionId}}\n\
             \x20 local API key                {key}\n\
             \x20 DynamoDB                     {dynamodb}   tables {table}, {claims}\n\
             \x20 function                     up to {concurrency} processes, timeout {timeout}s\n\
             \x20 WAF rule {rule:<20} {limit} requests per {window}s per client IP\n\
             \x20 sign-in                      {sign_in}\n\
             {custom_domain}\
             \x20 watch                        {watch}\n\
             \x20 program                      {coverage}\n\
             \x20 control (time, faults)       {control}   (devstack control --ready-file …)\n\
             \n\
             Try it in a browser: open {console}\n\
             or with wscat (`npm install -g wscat`, or `npx wscat`):\n\
             \x20 npx wscat -c {edge_try}\n\
             \x20 > {{\"action\":\"ping\"}}\n\
             \x20 < {{\"type\":\"pong\"}}\n\
             \x20 npx wscat -c {api}                                  # refused: 403, no key\n\
             \x20 npx wscat -c {api_try} -H \"{key_header}: {key}\"\n\
             \n\
             Ctrl-C stops the stack.\n",
            stack = t.stack,
            project = t.project,
            region = t.region,
            console = e.console,
            edge = e.edge,
            api = e.api,
            management = e.management,
            key = e.api_key,
            dynamodb = self.dynamodb.endpoint(),
            table = t.table.name,
            claims = t.claims_table.name,
            concurrency = self.max_concurrency,
            timeout = t.function.timeout_secs,
            rule = t.waf.rate_rule_name,
            limit = t.waf.rate_limit,
            window = t.waf.evaluation_window_secs,
            sign_in = self.sign_in_line,
            custom_domain = custom_domain_line(&t.aliases),
            edge_try = match &self.sign_in {
                Some(sign_in) => sign_in.wscat_url(&e.edge),
                None => e.edge.clone(),
            },
            api_try = match &self.sign_in {
                Some(sign_in) => sign_in.wscat_url(&e.api),
                None => e.api.clone(),
            },
            watch = self.watch_line,
            coverage = t.coverage_summary(),
            control = e.control,
        )
    }
}

/// The program's custom domain, if it has one: a line saying the local stack
/// does not play it (no certificates, no DNS: the edge above stands in).
fn custom_domain_line(aliases: &[String]) -> String {
    if aliases.is_empty() {
        return String::new();
    }
    format!(
        "\x20 custom domain                {} (not played locally: no certificate or DNS; use the edge above)\n",
        aliases.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::custom_domain_line;

    #[test]
    fn a_custom_domain_is_named_as_not_played_and_none_adds_no_line() {
        assert_eq!(custom_domain_line(&[]), "");
        let line = custom_domain_line(&["chat.example.com".into(), "ws.example.com".into()]);
        assert!(
            line.contains("custom domain")
                && line.contains("chat.example.com, ws.example.com")
                && line.contains("not played locally"),
            "{line}"
        );
    }
}
