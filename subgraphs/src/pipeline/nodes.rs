//! What each node kind does to its inputs. Reading and writing datasets is
//! the runner's job; a node only turns input texts into output texts.

use std::time::Duration;

use super::{
    model::now,
    templates::{parse_duration, Op},
};

/// Runs one node: one output text per declared output. The caller drops the
/// returned future to cancel (the `echo` wait is a plain sleep, so it stops at once).
pub async fn apply(
    op: Op,
    inputs: Vec<String>,
    parameter: impl Fn(&str) -> Option<String>,
) -> Result<Vec<String>, String> {
    let first = || {
        inputs
            .first()
            .cloned()
            .ok_or_else(|| format!("{op:?} needs one input"))
    };
    Ok(match op {
        Op::Echo => {
            let secs = parse_duration(&parameter("duration").unwrap_or_else(|| "0".into()))?;
            if secs > 0.0 {
                tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            }
            vec![first()? + &parameter("example").unwrap_or_default()]
        }
        Op::Uppercase => vec![first()?.to_uppercase()],
        Op::Reverse => vec![first()?.chars().rev().collect()],
        Op::AppendTimestamp => vec![format!("{} {}", first()?, now().to_rfc3339())],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_params(_: &str) -> Option<String> {
        None
    }

    #[tokio::test]
    async fn example01_steps() {
        let up = apply(Op::Uppercase, vec!["abc d".into()], no_params)
            .await
            .unwrap();
        assert_eq!(up, ["ABC D"]);
        let rev = apply(Op::Reverse, up, no_params).await.unwrap();
        assert_eq!(rev, ["D CBA"]);
        let out = apply(Op::AppendTimestamp, rev, no_params).await.unwrap();
        let (text, ts) = out[0]
            .split_once(' ')
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .unwrap();
        assert_eq!(text, "D");
        let (rest, ts) = ts
            .rsplit_once(' ')
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .unwrap();
        assert_eq!(rest, "CBA");
        assert!(crate::common::Timestamp::parse(&ts).is_ok(), "{ts}");
    }

    #[tokio::test]
    async fn echo_appends_the_example_parameter() {
        let params = |n: &str| match n {
            "duration" => Some("0.01".to_string()),
            "example" => Some(" world".to_string()),
            _ => None,
        };
        assert_eq!(
            apply(Op::Echo, vec!["hello".into()], params).await.unwrap(),
            ["hello world"]
        );
    }

    #[tokio::test]
    async fn echo_wait_stops_when_dropped() {
        let params = |n: &str| (n == "duration").then(|| "3600".to_string());
        let cancelled = tokio::time::timeout(
            Duration::from_millis(50),
            apply(Op::Echo, vec!["x".into()], params),
        )
        .await;
        assert!(cancelled.is_err());
    }
}
