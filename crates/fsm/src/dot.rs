//! Graphviz rendering of a machine's table.

use std::fmt::Write as _;

use crate::table::Machine;

impl Machine {
    /// The machine as a Graphviz `digraph`: the initial state bold, final
    /// states double-circled, one edge per row labelled `Event / Action`.
    pub fn to_dot(&self) -> String {
        let mut dot = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(dot, "digraph {} {{", quote(self.name()));
        let _ = writeln!(dot, "  rankdir=LR;");
        let _ = writeln!(dot, "  node [shape=box, style=rounded];");
        for state in self.states() {
            let attributes = if state == self.initial() {
                " [style=\"rounded,bold\"]"
            } else if self.is_final(state) {
                " [shape=doublecircle]"
            } else {
                ""
            };
            let _ = writeln!(dot, "  {}{attributes};", quote(state));
        }
        for row in self.rows() {
            let label = format!("{} / {}", row.event, row.action);
            let _ = writeln!(
                dot,
                "  {} -> {} [label={}];",
                quote(row.state),
                quote(row.next),
                quote(&label)
            );
        }
        dot.push_str("}\n");
        dot
    }
}

fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}
