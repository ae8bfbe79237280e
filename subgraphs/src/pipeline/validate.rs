//! Checks a `PipelineInput` against its template before anything is stored:
//! template name, parameters, dataset bindings, tags. Every problem of one
//! input is reported in the same error, so a client fixes them in one go.

use super::{
    model::{DatasetBinding, Parameter, PipelineInput},
    templates::{self, Template},
};
use crate::common::{check_len, ServiceError, ServiceResult, Tag};

pub const MAX_NAME_LEN: usize = 100;
pub const MAX_VALUE_LEN: usize = 1000;
pub const MAX_ID_LEN: usize = 100;
pub const MAX_TAGS: usize = 50;
pub const MAX_LIST: usize = 50;

/// An input that passed every local check (dataset existence is checked
/// against the dataset subgraph afterwards).
#[derive(Debug)]
pub struct ValidInput {
    pub template: &'static Template,
    /// Every template parameter, defaults filled in, in template order.
    pub parameters: Vec<Parameter>,
    /// Inputs then outputs, in template order.
    pub data_catalog: Vec<DatasetBinding>,
    pub tags: Vec<Tag>,
}

pub fn validate(input: PipelineInput) -> ServiceResult<ValidInput> {
    let mut problems: Vec<String> = Vec::new();
    let mut note = |r: ServiceResult<()>| {
        if let Err(e) = r {
            problems.push(e.to_string());
        }
    };

    note(check_len("name", &input.name, MAX_NAME_LEN));
    let params = input.parameters.unwrap_or_default();
    let tags_in = input.tags.unwrap_or_default();
    if params.len() > MAX_LIST {
        note(Err(ServiceError::bad_input(format!(
            "`parameters` has {} entries; the maximum is {MAX_LIST}",
            params.len()
        ))));
    }
    if input.data_catalog.len() > MAX_LIST {
        note(Err(ServiceError::bad_input(format!(
            "`dataCatalog` has {} entries; the maximum is {MAX_LIST}",
            input.data_catalog.len()
        ))));
    }
    if tags_in.len() > MAX_TAGS {
        note(Err(ServiceError::bad_input(format!(
            "`tags` has {} entries; the maximum is {MAX_TAGS}",
            tags_in.len()
        ))));
    }
    let mut tags = Vec::with_capacity(tags_in.len());
    for t in tags_in {
        match t.into_tag() {
            Ok(t) => tags.push(t),
            Err(e) => note(Err(e)),
        }
    }

    let template = match templates::find(&input.name) {
        Some(t) => Some(t),
        None => {
            let shown: String = input.name.chars().take(MAX_NAME_LEN).collect();
            problems.push(format!(
                "unknown template `{shown}`; the known templates are: {}",
                templates::known_names()
            ));
            None
        }
    };

    let mut parameters = Vec::new();
    let mut data_catalog = Vec::new();
    if let Some(t) = template {
        parameters = check_parameters(t, &params, &mut problems);
        data_catalog = check_bindings(t, &input.data_catalog, &mut problems);
    }

    match template {
        Some(template) if problems.is_empty() => Ok(ValidInput {
            template,
            parameters,
            data_catalog,
            tags,
        }),
        _ => Err(ServiceError::bad_input(problems.join("; "))),
    }
}

fn check_parameters(
    t: &Template,
    given: &[super::model::ParameterInput],
    problems: &mut Vec<String>,
) -> Vec<Parameter> {
    let mut values: Vec<Option<&str>> = vec![None; t.parameters.len()];
    for p in given {
        if let Err(e) = check_len("parameters.name", &p.name, MAX_NAME_LEN) {
            problems.push(e.to_string());
            continue;
        }
        if let Err(e) = check_len(&format!("parameter {}", p.name), &p.value, MAX_VALUE_LEN) {
            problems.push(e.to_string());
        }
        let Some(pos) = t.parameters.iter().position(|s| s.name == p.name) else {
            let known = if t.parameters.is_empty() {
                "it takes no parameters".to_string()
            } else {
                format!(
                    "its parameters are: {}",
                    t.parameters
                        .iter()
                        .map(|s| s.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            problems.push(format!(
                "unknown parameter `{}` for template {}; {known}",
                p.name, t.name
            ));
            continue;
        };
        if values[pos].is_some() {
            problems.push(format!(
                "parameter `{}` is given twice; give it once",
                p.name
            ));
            continue;
        }
        if let Err(e) = (t.parameters[pos].check)(&p.value) {
            problems.push(e);
        }
        values[pos] = Some(&p.value);
    }
    t.parameters
        .iter()
        .zip(values)
        .map(|(spec, v)| Parameter {
            name: spec.name.to_string(),
            value: v.unwrap_or(spec.default).to_string(),
        })
        .collect()
}

fn check_bindings(
    t: &Template,
    given: &[super::model::DatasetBindingInput],
    problems: &mut Vec<String>,
) -> Vec<DatasetBinding> {
    let expected: Vec<&str> = t.bindings().collect();
    let mut bound: Vec<Option<&str>> = vec![None; expected.len()];
    for b in given {
        if let Err(e) = check_len("dataCatalog.name", &b.name, MAX_NAME_LEN) {
            problems.push(e.to_string());
            continue;
        }
        if let Err(e) = check_len(
            &format!("dataCatalog {} datasetId", b.name),
            &b.dataset_id,
            MAX_ID_LEN,
        ) {
            problems.push(e.to_string());
            continue;
        }
        if b.dataset_id.trim().is_empty() {
            problems.push(format!(
                "`{}` is bound to an empty datasetId; give a dataset id",
                b.name
            ));
            continue;
        }
        let Some(pos) = expected.iter().position(|e| *e == b.name) else {
            problems.push(format!(
                "`{}` is not an input or output of template {}; bind exactly: {}",
                b.name,
                t.name,
                expected.join(", ")
            ));
            continue;
        };
        if bound[pos].is_some() {
            problems.push(format!(
                "`{}` is bound twice in dataCatalog; bind it once",
                b.name
            ));
            continue;
        }
        bound[pos] = Some(&b.dataset_id);
    }
    let missing: Vec<&str> = expected
        .iter()
        .zip(&bound)
        .filter(|(_, b)| b.is_none())
        .map(|(e, _)| *e)
        .collect();
    if !missing.is_empty() {
        problems.push(format!(
            "dataCatalog does not bind {} of template {}; every input and output needs a dataset id ({})",
            missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "),
            t.name,
            expected.join(", ")
        ));
    }
    expected
        .iter()
        .zip(bound)
        .filter_map(|(name, id)| {
            id.map(|id| DatasetBinding {
                name: name.to_string(),
                dataset_id: id.into(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        common::TagInput,
        pipeline::model::{DatasetBindingInput, ParameterInput},
    };

    fn input(name: &str) -> PipelineInput {
        PipelineInput {
            name: name.into(),
            parameters: None,
            data_catalog: vec![bind("text_in", "a"), bind("text_out", "b")],
            tags: None,
        }
    }

    fn bind(name: &str, id: &str) -> DatasetBindingInput {
        DatasetBindingInput {
            name: name.into(),
            dataset_id: id.into(),
        }
    }

    fn param(name: &str, value: &str) -> ParameterInput {
        ParameterInput {
            name: name.into(),
            value: value.into(),
        }
    }

    fn err(i: PipelineInput) -> String {
        let e = validate(i).unwrap_err();
        assert_eq!(e.code(), "BAD_USER_INPUT");
        e.to_string()
    }

    #[test]
    fn defaults_are_filled_in_template_order() {
        let mut i = input("example00");
        i.parameters = Some(vec![param("example", "hi")]);
        i.data_catalog = vec![bind("text_out", "b"), bind("text_in", "a")];
        let v = validate(i).unwrap();
        assert_eq!(
            v.parameters,
            vec![
                Parameter {
                    name: "duration".into(),
                    value: "0".into()
                },
                Parameter {
                    name: "example".into(),
                    value: "hi".into()
                },
            ]
        );
        let names: Vec<_> = v.data_catalog.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["text_in", "text_out"]);
    }

    #[test]
    fn unknown_template_lists_known_ones() {
        let e = err(input("example99"));
        assert!(e.contains("unknown template `example99`"), "{e}");
        assert!(e.contains("example00, example01"), "{e}");
    }

    #[test]
    fn parameter_errors() {
        let mut i = input("example01");
        i.parameters = Some(vec![param("duration", "1")]);
        let e = err(i);
        assert!(
            e.contains(
                "unknown parameter `duration` for template example01; it takes no parameters"
            ),
            "{e}"
        );

        let mut i = input("example00");
        i.parameters = Some(vec![param("speed", "1")]);
        let e = err(i);
        assert!(e.contains("its parameters are: duration, example"), "{e}");

        let mut i = input("example00");
        i.parameters = Some(vec![param("duration", "-3")]);
        assert!(err(i).contains("from 0 to 3600"));

        let mut i = input("example00");
        i.parameters = Some(vec![param("duration", "1"), param("duration", "2")]);
        assert!(err(i).contains("given twice"));

        let mut i = input("example00");
        i.parameters = Some(vec![param("example", &"x".repeat(MAX_VALUE_LEN + 1))]);
        assert!(err(i).contains("the maximum is 1000"));
    }

    #[test]
    fn binding_errors() {
        let mut i = input("example01");
        i.data_catalog = vec![bind("text_in", "a")];
        let e = err(i);
        assert!(e.contains("does not bind `text_out`"), "{e}");

        let mut i = input("example01");
        i.data_catalog.push(bind("text_extra", "c"));
        let e = err(i);
        assert!(e.contains("`text_extra` is not an input or output of template example01; bind exactly: text_in, text_out"), "{e}");

        let mut i = input("example01");
        i.data_catalog.push(bind("text_in", "c"));
        assert!(err(i).contains("`text_in` is bound twice"));

        let mut i = input("example01");
        i.data_catalog[0] = bind("text_in", "");
        assert!(err(i).contains("empty datasetId"));

        let mut i = input("example01");
        i.data_catalog[0] = bind("text_in", &"d".repeat(MAX_ID_LEN + 1));
        assert!(err(i).contains("the maximum is 100"));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut i = input("example00");
        i.parameters = Some(vec![param("speed", "1"), param("duration", "x")]);
        i.data_catalog = vec![];
        i.tags = Some(vec![TagInput {
            key: "".into(),
            value: "v".into(),
        }]);
        let e = err(i);
        for part in [
            "unknown parameter `speed`",
            "`duration` must be a number",
            "does not bind",
            "`tag.key` must not be empty",
        ] {
            assert!(e.contains(part), "{part} missing from: {e}");
        }
    }

    #[test]
    fn long_names_and_tags_are_refused() {
        let e = err(input(&"n".repeat(MAX_NAME_LEN + 1)));
        assert!(e.contains("`name` is 101 characters long"), "{e}");
        let mut i = input("example01");
        i.tags = Some(vec![TagInput {
            key: "k".into(),
            value: "v".repeat(501),
        }]);
        assert!(err(i).contains("`tag.value`"));
        let mut i = input("example01");
        i.tags = Some(
            (0..=MAX_TAGS)
                .map(|n| TagInput {
                    key: format!("k{n}"),
                    value: "v".into(),
                })
                .collect(),
        );
        assert!(err(i).contains("`tags` has 51 entries"));
    }
}
