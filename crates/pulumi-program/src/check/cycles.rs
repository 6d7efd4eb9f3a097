//! Dependency cycles between resources and variables, which `pulumi preview`
//! refuses.

use super::*;

impl Checker<'_> {
    /// Pulumi refuses a program whose resources and variables depend on each
    /// other in a cycle (an output cannot feed the resource it comes from).
    pub(super) fn cycles(&mut self) {
        let program = self.program;
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let nodes: BTreeSet<String> = program
            .resources()
            .iter()
            .map(|r| r.name.to_string())
            .chain(program.variables().map(|(k, _)| k.to_string()))
            .collect();
        if let Some(section) = program.section("resources") {
            for (name, body) in section {
                if let Some(name) = name.as_str() {
                    let mut roots = BTreeSet::new();
                    references(body, &mut roots);
                    roots.retain(|r| nodes.contains(r));
                    graph.insert(name.to_string(), roots);
                }
            }
        }
        for (name, value) in program.variables() {
            let mut roots = BTreeSet::new();
            references(value, &mut roots);
            roots.retain(|r| nodes.contains(r));
            graph.insert(name.to_string(), roots);
        }
        let mut done = BTreeSet::new();
        let mut reported = BTreeSet::new();
        for start in graph.keys() {
            let mut stack = vec![start.clone()];
            find_cycle(&graph, &mut stack, &mut done, &mut |cycle| {
                let mut members = cycle.to_vec();
                members.sort();
                if reported.insert(members) {
                    let first = &cycle[0];
                    let section = if program.variable(first).is_some() {
                        "variables"
                    } else {
                        "resources"
                    };
                    self.diags.push(Diagnostic {
                        path: format!("{section}.{first}"),
                        message: format!("dependency cycle: {} -> {first}", cycle.join(" -> ")),
                    });
                }
            });
        }
    }
}

/// Depth-first search from the last node of `stack`; calls `found` with each
/// cycle (the nodes in order) it closes.
pub(super) fn find_cycle(
    graph: &BTreeMap<String, BTreeSet<String>>,
    stack: &mut Vec<String>,
    done: &mut BTreeSet<String>,
    found: &mut dyn FnMut(&[String]),
) {
    let Some(node) = stack.last().cloned() else {
        return;
    };
    if done.contains(&node) {
        return;
    }
    for next in graph.get(&node).into_iter().flatten() {
        if let Some(pos) = stack.iter().position(|n| n == next) {
            found(&stack[pos..]);
        } else {
            stack.push(next.clone());
            find_cycle(graph, stack, done, found);
            stack.pop();
        }
    }
    done.insert(node);
}

/// The roots of every `${...}` in a value.
pub(super) fn references(value: &Value, roots: &mut BTreeSet<String>) {
    match value {
        Value::String(s) => {
            if let Ok(segments) = interpolation::parse(s) {
                for segment in segments {
                    if let Segment::Access(access) = segment {
                        roots.insert(access.root);
                    }
                }
            }
        }
        Value::Sequence(items) => items.iter().for_each(|item| references(item, roots)),
        Value::Mapping(m) => m.values().for_each(|v| references(v, roots)),
        Value::Tagged(tagged) => references(&tagged.value, roots),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}
