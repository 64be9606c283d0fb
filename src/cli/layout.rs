//! `anybit layout`: a register layout's shape, threads and slots, or its whole map.

use std::io::Write;

use anybit::layouts::RegisterLayout;
use anyhow::{Result, anyhow};

pub fn run(expr: &str, table: bool, out: &mut dyn Write) -> Result<()> {
    let layout: RegisterLayout = expr.parse().map_err(|err: anybit::layouts::ParseError| {
        // `render` shows the expression with a caret under the problem.
        let rendered = err.render(expr);
        anyhow!("malformed layout expression: {}", rendered.strip_prefix("error: ").unwrap_or(&rendered))
    })?;
    if table { print_table(&layout, out) } else { print_summary(&layout, out) }
}

fn print_table(layout: &RegisterLayout, out: &mut dyn Write) -> Result<()> {
    for (thread, slot, coords) in layout.table() {
        write!(out, "{thread} {slot}")?;
        for c in coords {
            write!(out, " {c}")?;
        }
        writeln!(out)?;
    }
    Ok(())
}

fn print_summary(layout: &RegisterLayout, out: &mut dyn Write) -> Result<()> {
    let shape: Vec<String> = layout.shape().iter().map(usize::to_string).collect();
    let holders = layout.num_threads() * layout.num_slots() / layout.num_elements().max(1);
    let rows = [
        ("layout", layout.to_string()),
        ("modes", layout.to_general_string()),
        ("shape", format!("[{}]", shape.join(", "))),
        ("threads", layout.num_threads().to_string()),
        ("slots", format!("{} per thread", layout.num_slots())),
        ("elements", layout.num_elements().to_string()),
        (
            "replicated",
            if layout.is_replicated() {
                format!("yes, each element is held by {holders} threads")
            } else {
                "no".into()
            },
        ),
    ];
    for (key, value) in rows {
        writeln!(out, "{key:10}  {value}")?;
    }
    Ok(())
}
