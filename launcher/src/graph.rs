//! Graphs of built-in tasks for `shoal run`: read from JSON, or generated for benchmarks.
//!
//! ```json
//! {"tasks": [{"key": "a", "kind": "sum", "args": {"add": 1}, "deps": [],
//!             "priority": 0, "retries": 0, "resources": {"GPU": 1}, "workers": []}],
//!  "outputs": ["a"]}
//! ```

use crate::parse::Generated;
use anyhow::{bail, Context};
use bytes::Bytes;
use serde::Deserialize;
use shoal_comm::message::{ExecutorKind, Resource, TaskSpec};
use shoal_runtime::executor::builtin::{self, BytesArgs, FailArgs, SleepArgs, SumArgs};
use std::collections::BTreeMap;
use std::path::Path;

/// A graph ready to submit.
#[derive(Debug)]
pub struct Graph {
    pub tasks: Vec<TaskSpec>,
    pub frames: Vec<Bytes>,
    pub outputs: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonGraph {
    tasks: Vec<JsonTask>,
    outputs: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonTask {
    key: String,
    kind: ExecutorKind,
    #[serde(default)]
    args: serde_json::Value,
    #[serde(default)]
    deps: Vec<String>,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    retries: u32,
    #[serde(default)]
    resources: BTreeMap<String, f64>,
    #[serde(default)]
    workers: Vec<String>,
}

fn payload(
    kind: ExecutorKind,
    key: &str,
    args: &serde_json::Value,
) -> anyhow::Result<Option<Bytes>> {
    if args.is_null() {
        return Ok(None);
    }
    let bad =
        |e: serde_json::Error| anyhow::anyhow!("task {key:?}: bad args for kind {kind:?}: {e}");
    let bytes = match kind {
        ExecutorKind::Sleep => {
            builtin::encode_args(&serde_json::from_value::<SleepArgs>(args.clone()).map_err(bad)?)
        }
        ExecutorKind::Bytes => {
            builtin::encode_args(&serde_json::from_value::<BytesArgs>(args.clone()).map_err(bad)?)
        }
        ExecutorKind::Sum => {
            builtin::encode_args(&serde_json::from_value::<SumArgs>(args.clone()).map_err(bad)?)
        }
        ExecutorKind::Fail => {
            builtin::encode_args(&serde_json::from_value::<FailArgs>(args.clone()).map_err(bad)?)
        }
        ExecutorKind::Noop | ExecutorKind::Concat | ExecutorKind::Checksum => {
            bail!("task {key:?}: kind {kind:?} takes no args")
        }
        ExecutorKind::Python => {
            bail!("task {key:?}: python tasks are submitted from the Python client, not from JSON")
        }
    };
    Ok(Some(bytes))
}

impl Graph {
    /// Read a JSON graph file.
    ///
    /// # Errors
    /// Unreadable file, invalid JSON (with line and column), unknown kinds (listing the
    /// known ones), bad args.
    pub fn from_file(path: &Path) -> anyhow::Result<Graph> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read graph file {}", path.display()))?;
        Graph::from_json(&bytes)
            .with_context(|| format!("graph file {} is not a valid graph", path.display()))
    }

    /// A graph from JSON bytes.
    ///
    /// # Errors
    /// Not JSON, not a graph, or a task's `args` do not fit its kind.
    pub fn from_json(bytes: &[u8]) -> anyhow::Result<Graph> {
        let json: JsonGraph = serde_json::from_slice(bytes)?;
        let mut graph = Graph {
            tasks: Vec::with_capacity(json.tasks.len()),
            frames: Vec::new(),
            outputs: json.outputs,
        };
        for t in json.tasks {
            let mut spec = TaskSpec::new(t.key, t.kind, t.deps);
            if let Some(p) = payload(t.kind, &spec.key, &t.args)? {
                spec.payload = Some(graph.frames.len() as u32);
                graph.frames.push(p);
            }
            spec.priority = t.priority;
            spec.retries = t.retries;
            spec.resources = t
                .resources
                .into_iter()
                .map(|(name, amount)| Resource { name, amount })
                .collect();
            spec.workers = t.workers;
            graph.tasks.push(spec);
        }
        Ok(graph)
    }

    /// A generated benchmark graph. Leaves are `sum` tasks producing their index (or
    /// no-ops for `independent`), so results can be checked.
    pub fn generate(what: Generated) -> Graph {
        let mut graph = Graph {
            tasks: Vec::new(),
            frames: Vec::new(),
            outputs: Vec::new(),
        };
        let leaf = |graph: &mut Graph, i: u64| {
            let mut spec = TaskSpec::new(format!("leaf-{i}"), ExecutorKind::Sum, Vec::new());
            spec.payload = Some(graph.frames.len() as u32);
            graph.frames.push(builtin::encode_args(&SumArgs {
                add: i,
                sleep_ms: 0,
            }));
            graph.tasks.push(spec);
        };
        match what {
            Generated::Independent(n) => {
                for i in 0..n {
                    graph.tasks.push(TaskSpec::new(
                        format!("task-{i}"),
                        ExecutorKind::Noop,
                        Vec::new(),
                    ));
                }
                graph.outputs = graph.tasks.iter().map(|t| t.key.clone()).collect();
            }
            Generated::Merge(n) => {
                for i in 0..n {
                    leaf(&mut graph, i);
                }
                let deps = graph.tasks.iter().map(|t| t.key.clone()).collect();
                graph
                    .tasks
                    .push(TaskSpec::new("merge", ExecutorKind::Sum, deps));
                graph.outputs = vec!["merge".into()];
            }
            Generated::Tree(n) => {
                for i in 0..n {
                    leaf(&mut graph, i);
                }
                let mut level: Vec<String> = graph.tasks.iter().map(|t| t.key.clone()).collect();
                let mut depth = 0;
                while level.len() > 1 {
                    depth += 1;
                    let mut next = Vec::with_capacity(level.len().div_ceil(2));
                    for (j, pair) in level.chunks(2).enumerate() {
                        let key = format!("tree-{depth}-{j}");
                        graph.tasks.push(TaskSpec::new(
                            key.clone(),
                            ExecutorKind::Sum,
                            pair.to_vec(),
                        ));
                        next.push(key);
                    }
                    level = next;
                }
                graph.outputs = level;
            }
        }
        graph
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_graphs_have_the_promised_shape() {
        let merge = Graph::generate(Generated::Merge(10));
        assert_eq!(merge.tasks.len(), 11);
        assert_eq!(merge.tasks[10].deps.len(), 10);
        let tree = Graph::generate(Generated::Tree(8));
        assert_eq!(tree.tasks.len(), 15);
        assert_eq!(tree.outputs, vec!["tree-3-0".to_string()]);
        assert_eq!(Graph::generate(Generated::Independent(5)).outputs.len(), 5);
    }

    #[test]
    fn json_graph_errors_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.json");
        std::fs::write(
            &path,
            r#"{"tasks": [{"key": "a", "kind": "warp"}], "outputs": ["a"]}"#,
        )
        .unwrap();
        let err = format!("{:#}", Graph::from_file(&path).err().unwrap());
        assert!(
            err.contains("unknown variant `warp`") && err.contains("sum"),
            "{err}"
        );
        std::fs::write(
            &path,
            r#"{"tasks": [{"key": "a", "kind": "sleep", "args": {"secs": 1}}], "outputs": []}"#,
        )
        .unwrap();
        let err = format!("{:#}", Graph::from_file(&path).err().unwrap());
        assert!(err.contains("bad args for kind Sleep"), "{err}");
    }

    #[test]
    fn fuzz_graph_json_reader() {
        let seeds: Vec<Vec<u8>> = [
            r#"{"tasks": [{"key": "a", "kind": "sum", "args": {"add": 1}, "deps": [], "priority": 2, "retries": 1, "resources": {"GPU": 1}, "workers": ["w"]}, {"key": "b", "kind": "sum", "deps": ["a"]}], "outputs": ["b"]}"#,
            r#"{"tasks": [{"key": "s", "kind": "sleep", "args": {"ms": 5}}, {"key": "f", "kind": "fail", "args": {"message": "x"}}, {"key": "n", "kind": "noop"}], "outputs": ["s", "f", "n"]}"#,
            r#"{"tasks": [{"key": "big", "kind": "bytes", "args": {"size": 10}}], "outputs": []}"#,
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        shoal_comm::fuzz::run("graph-json", 51, &seeds, |input| {
            if let Ok(graph) = Graph::from_json(input) {
                // Every payload a task names is one of the graph's frames.
                for t in &graph.tasks {
                    if let Some(p) = t.payload {
                        assert!((p as usize) < graph.frames.len());
                    }
                }
            }
        });
    }
}
