//! `karton report RESULTS… -o DIR`: the HTML page (inline SVG) and Markdown summary.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Results files written by `karton bench` (karton.bench/v1 JSON)
    #[arg(required = true, value_name = "RESULTS")]
    pub results: Vec<PathBuf>,
    /// Output directory (index.html, summary.md, CSV)
    #[arg(short, long, default_value = "report", value_name = "DIR")]
    pub output: PathBuf,
}

pub fn run(args: ReportArgs, _g: &crate::Global) -> anyhow::Result<i32> {
    let inputs = karton_report::load_all(&args.results)?;
    let w = karton_report::write_all(&inputs, &args.output)?;
    println!("{} ({} charts)", w.html.display(), w.charts);
    println!("{}", w.markdown.display());
    for c in &w.csv {
        println!("{}", c.display());
    }
    Ok(0)
}
