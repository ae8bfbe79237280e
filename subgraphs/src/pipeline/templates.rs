//! The built-in pipeline templates: their nodes in execution order, the
//! dataset bindings they need and the parameters they accept.

/// What a node does; the work itself is in `nodes.rs`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Waits `duration` seconds, then appends the `example` parameter.
    Echo,
    Uppercase,
    Reverse,
    AppendTimestamp,
}

/// One step of a template. Names in `inputs`/`outputs` that are not template
/// inputs/outputs are intermediate values, passed in memory.
#[derive(Debug)]
pub struct NodeSpec {
    pub name: &'static str,
    pub inputs: &'static [&'static str],
    pub outputs: &'static [&'static str],
    pub op: Op,
}

/// A parameter a template accepts, with its default and its check.
#[derive(Debug)]
pub struct ParamSpec {
    pub name: &'static str,
    pub default: &'static str,
    pub doc: &'static str,
    pub check: fn(&str) -> Result<(), String>,
}

#[derive(Debug)]
pub struct Template {
    pub name: &'static str,
    pub summary: &'static str,
    /// Datasets read; each must be bound when creating a run.
    pub inputs: &'static [&'static str],
    /// Datasets written; each must be bound when creating a run.
    pub outputs: &'static [&'static str],
    pub parameters: &'static [ParamSpec],
    /// In execution order: a node only uses template inputs and earlier outputs.
    pub nodes: &'static [NodeSpec],
}

/// Longest wait `example00` accepts, in seconds.
pub const MAX_DURATION_SECS: f64 = 3600.0;

pub static TEMPLATES: &[Template] = &[
    Template {
        name: "example00",
        summary: "Waits `duration` seconds, then writes the text of `text_in` followed by the `example` parameter to `text_out`.",
        inputs: &["text_in"],
        outputs: &["text_out"],
        parameters: &[
            ParamSpec {
                name: "duration",
                default: "0",
                doc: "seconds to wait before writing, a number from 0 to 3600",
                check: check_duration,
            },
            ParamSpec {
                name: "example",
                default: "hello",
                doc: "text appended to the input",
                check: |_| Ok(()),
            },
        ],
        nodes: &[NodeSpec {
            name: "echo",
            inputs: &["text_in"],
            outputs: &["text_out"],
            op: Op::Echo,
        }],
    },
    Template {
        name: "example01",
        summary: "Uppercases the text of `text_in`, reverses it and appends a timestamp, into `text_out`.",
        inputs: &["text_in"],
        outputs: &["text_out"],
        parameters: &[],
        nodes: &[
            NodeSpec {
                name: "uppercase",
                inputs: &["text_in"],
                outputs: &["uppercased"],
                op: Op::Uppercase,
            },
            NodeSpec {
                name: "reverse",
                inputs: &["uppercased"],
                outputs: &["reversed"],
                op: Op::Reverse,
            },
            NodeSpec {
                name: "append_timestamp",
                inputs: &["reversed"],
                outputs: &["text_out"],
                op: Op::AppendTimestamp,
            },
        ],
    },
];

pub fn find(name: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.name == name)
}

/// "example00, example01": for error messages.
pub fn known_names() -> String {
    TEMPLATES
        .iter()
        .map(|t| t.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses a valid `duration`.
pub fn parse_duration(value: &str) -> Result<f64, String> {
    let secs: f64 = value.trim().parse().map_err(|_| {
        format!("parameter `duration` must be a number of seconds from 0 to {MAX_DURATION_SECS}, got \"{value}\"")
    })?;
    if !secs.is_finite() || !(0.0..=MAX_DURATION_SECS).contains(&secs) {
        return Err(format!(
            "parameter `duration` must be a number of seconds from 0 to {MAX_DURATION_SECS}, got \"{value}\""
        ));
    }
    Ok(secs)
}

fn check_duration(value: &str) -> Result<(), String> {
    parse_duration(value).map(|_| ())
}

impl Template {
    pub fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.parameters.iter().find(|p| p.name == name)
    }

    /// Every name a run must bind to a dataset: inputs then outputs.
    pub fn bindings(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.inputs.iter().chain(self.outputs.iter()).copied()
    }

    pub fn is_dataset(&self, value: &str) -> bool {
        self.bindings().any(|b| b == value)
    }

    /// A readable account of the template: what it does, its bindings and
    /// parameters, and its nodes in execution order.
    pub fn describe(&self) -> String {
        let list = |names: &[&str]| {
            if names.is_empty() {
                "(none)".to_string()
            } else {
                names.join(", ")
            }
        };
        let mut out = format!("{}: {}\n", self.name, self.summary);
        out.push_str(&format!("inputs: {}\n", list(self.inputs)));
        out.push_str(&format!("outputs: {}\n", list(self.outputs)));
        if self.parameters.is_empty() {
            out.push_str("parameters: (none)\n");
        } else {
            out.push_str("parameters:\n");
            for p in self.parameters {
                out.push_str(&format!(
                    "  {} (default \"{}\"): {}\n",
                    p.name, p.default, p.doc
                ));
            }
        }
        out.push_str("execution order:\n");
        for (i, node) in self.nodes.iter().enumerate() {
            let side = |names: &[&str]| {
                names
                    .iter()
                    .map(|n| {
                        if self.is_dataset(n) {
                            format!("{n} (dataset)")
                        } else {
                            format!("{n} (in memory)")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            out.push_str(&format!(
                "  {}. {}: {} -> {}\n",
                i + 1,
                node.name,
                side(node.inputs),
                side(node.outputs)
            ));
        }
        out.trim_end().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_reads_only_what_is_already_there() {
        for t in TEMPLATES {
            let mut available: Vec<&str> = t.inputs.to_vec();
            for node in t.nodes {
                for input in node.inputs {
                    assert!(
                        available.contains(input),
                        "{}: {} reads {input} too early",
                        t.name,
                        node.name
                    );
                }
                available.extend(node.outputs);
            }
            for output in t.outputs {
                assert!(
                    available.contains(output),
                    "{}: nothing writes {output}",
                    t.name
                );
            }
        }
    }

    #[test]
    fn describe_lists_the_execution_order() {
        let d = find("example01").unwrap().describe();
        let up = d.find("1. uppercase").unwrap();
        let rev = d.find("2. reverse").unwrap();
        let ts = d.find("3. append_timestamp").unwrap();
        assert!(up < rev && rev < ts, "{d}");
        assert!(d.contains("inputs: text_in"), "{d}");
        assert!(d.contains("outputs: text_out"), "{d}");
        assert!(d.contains("uppercased (in memory)"), "{d}");
        let d = find("example00").unwrap().describe();
        assert!(d.contains("duration (default \"0\")"), "{d}");
        assert!(
            d.contains("1. echo: text_in (dataset) -> text_out (dataset)"),
            "{d}"
        );
    }

    #[test]
    fn duration_bounds() {
        assert_eq!(parse_duration("0").unwrap(), 0.0);
        assert_eq!(parse_duration("1.5").unwrap(), 1.5);
        assert_eq!(parse_duration("3600").unwrap(), 3600.0);
        for bad in ["-1", "3600.5", "abc", "", "NaN", "inf", "1e9"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains("from 0 to 3600"), "{bad}: {err}");
        }
    }

    #[test]
    fn unknown_template_is_none_and_names_are_listed() {
        assert!(find("nope").is_none());
        assert_eq!(known_names(), "example00, example01");
    }
}
