//! The order in which a graph's tasks should run when nothing else decides: depth first
//! from the outputs, so that each output's inputs are finished (and their own inputs
//! released) before work on the next output starts.
//!
//! Clients use it for graphs that come without priorities (dask graphs, which dask would
//! order in Python at 25-40 µs per task). Executing in this order keeps the results held
//! at once close to the graph's depth times its fan-in, and every task comes after all of
//! its inputs. The scheduler still decides placement and may run ready tasks out of
//! order; priorities only break ties.

/// A task's position in the depth-first order: 0 runs first.
pub type Position = u32;

/// Depth-first post-order positions of the `deps.len()` tasks of a graph.
///
/// `deps[i]` are the indices of task `i`'s inputs (duplicates and indices out of range
/// are ignored); `outputs` are the tasks wanted, visited in the order given. Tasks no
/// output needs come last, in index order. Among a task's inputs, the one with the most
/// inputs of its own is visited first (a larger subgraph finished early leaves fewer
/// results waiting), ties in argument order. Iterative: chains of any length are fine.
pub fn depth_first(deps: &[Vec<usize>], outputs: &[usize]) -> Vec<Position> {
    const UNSEEN: Position = Position::MAX;
    let n = deps.len();
    let mut position = vec![UNSEEN; n];
    let mut entered = vec![false; n];
    let mut next: Position = 0;
    // (task, its inputs in visiting order, how many of them were visited)
    let mut stack: Vec<(usize, Vec<usize>, usize)> = Vec::new();
    let roots = outputs.iter().copied().chain(0..n);
    for root in roots {
        if root >= n || entered[root] {
            continue;
        }
        entered[root] = true;
        stack.push((root, visiting_order(deps, root), 0));
        while let Some((task, inputs, visited)) = stack.last_mut() {
            if let Some(&input) = inputs.get(*visited) {
                *visited += 1;
                if !entered[input] {
                    entered[input] = true;
                    let order = visiting_order(deps, input);
                    stack.push((input, order, 0));
                }
                continue;
            }
            position[*task] = next;
            next += 1;
            stack.pop();
        }
    }
    position
}

/// `task`'s inputs in visiting order: the most-connected first (stable, so equal fan-in
/// keeps argument order). Bad indices are dropped; a duplicate is harmless (the second
/// visit finds it entered).
fn visiting_order(deps: &[Vec<usize>], task: usize) -> Vec<usize> {
    let n = deps.len();
    let mut inputs: Vec<usize> = deps[task]
        .iter()
        .copied()
        .filter(|&d| d < n && d != task)
        .collect();
    inputs.sort_by_key(|&d| std::cmp::Reverse(deps[d].len()));
    inputs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every task after its inputs, and positions a permutation of 0..n.
    fn check_topological(deps: &[Vec<usize>], pos: &[Position]) {
        let mut seen = pos.to_vec();
        seen.sort_unstable();
        assert_eq!(seen, (0..deps.len() as Position).collect::<Vec<_>>());
        for (task, inputs) in deps.iter().enumerate() {
            for &d in inputs {
                assert!(pos[d] < pos[task], "input {d} after task {task}");
            }
        }
    }

    /// The most results held at once when running tasks one at a time in `pos` order,
    /// releasing a result once its last dependent ran (outputs are kept).
    fn peak_held(deps: &[Vec<usize>], outputs: &[usize], pos: &[Position]) -> usize {
        let n = deps.len();
        let mut waiting = vec![0usize; n];
        for inputs in deps {
            for &d in inputs {
                waiting[d] += 1;
            }
        }
        let mut by_pos: Vec<usize> = (0..n).collect();
        by_pos.sort_by_key(|&t| pos[t]);
        let (mut held, mut peak) = (0usize, 0usize);
        for t in by_pos {
            held += 1;
            peak = peak.max(held);
            for &d in &deps[t] {
                waiting[d] -= 1;
                if waiting[d] == 0 && !outputs.contains(&d) {
                    held -= 1;
                }
            }
        }
        peak
    }

    /// A binary tree reduction over `leaves` leaves; returns (deps, root).
    fn tree(leaves: usize) -> (Vec<Vec<usize>>, usize) {
        let mut deps: Vec<Vec<usize>> = (0..leaves).map(|_| Vec::new()).collect();
        let mut level: Vec<usize> = (0..leaves).collect();
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|pair| {
                    deps.push(pair.to_vec());
                    deps.len() - 1
                })
                .collect();
        }
        (deps, level[0])
    }

    #[test]
    fn a_tree_is_reduced_as_it_goes() {
        let (deps, root) = tree(1024);
        let pos = depth_first(&deps, &[root]);
        check_topological(&deps, &pos);
        // Breadth first would hold 1024 leaves; depth first holds one per level.
        assert!(
            peak_held(&deps, &[root], &pos) <= 12,
            "{}",
            peak_held(&deps, &[root], &pos)
        );
    }

    #[test]
    fn outputs_are_finished_in_the_order_asked() {
        // Two independent chains a0 -> a1 and b0 -> b1; ask for b1 first.
        let deps = vec![vec![], vec![0], vec![], vec![2]];
        let pos = depth_first(&deps, &[3, 1]);
        assert_eq!(pos, vec![2, 3, 0, 1]);
    }

    #[test]
    fn a_long_chain_does_not_overflow_the_stack() {
        let n = 200_000;
        let deps: Vec<Vec<usize>> = (0..n)
            .map(|i| if i == 0 { vec![] } else { vec![i - 1] })
            .collect();
        let pos = depth_first(&deps, &[n - 1]);
        check_topological(&deps, &pos);
        assert_eq!(pos[n - 1], (n - 1) as Position);
    }

    #[test]
    fn duplicates_bad_indices_and_unreachable_tasks_are_handled() {
        // 2 = f(0, 0, 99, 2); 3 is not needed by the output.
        let deps = vec![vec![], vec![], vec![0, 0, 99, 2], vec![1]];
        let pos = depth_first(&deps, &[2]);
        assert_eq!(pos[0], 0);
        assert_eq!(pos[2], 1);
        // The unreachable tasks come after, inputs first.
        assert_eq!(pos[1], 2);
        assert_eq!(pos[3], 3);
    }

    #[test]
    fn a_bigger_input_subgraph_is_visited_first() {
        // 0: leaf, 1..=3: chain 1 <- 2 <- 3, 4 = f(0, 3): 3 has an input, 0 has none.
        let deps = vec![vec![], vec![], vec![1], vec![2], vec![0, 3]];
        let pos = depth_first(&deps, &[4]);
        check_topological(&deps, &pos);
        assert!(pos[3] < pos[0], "{pos:?}");
    }
}
