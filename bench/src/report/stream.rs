//! Section 5c: response streaming, time to first byte.

use std::fmt::{self, Write as _};

use super::{Results, num};

pub(super) fn stream(md: &mut String, r: &Results) -> fmt::Result {
    let rows = r.all("stream", &[]);
    if rows.is_empty() {
        return Ok(());
    }
    writeln!(
        md,
        "### Response streaming (`adapter http -- streamer`)\n\n\
         The `streamer` test function (`lambda_http`'s streaming runtime) sends a chunk, works \
         for `delay` ms, then sends the rest; one request at a time (`stream-ttfb`). \
         *RESPONSE_STREAM* (the default) passes the reply on as it is written; *BUFFERED* \
         (`--invoke-mode BUFFERED`, a function URL's default) answers once it is whole.\n"
    )?;
    writeln!(
        md,
        "| invoke mode | delay ms | requests | first byte p50 ms | first byte p99 ms | whole reply p50 ms | errors |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    )?;
    for s in &rows {
        writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            s.s("target"),
            s.s("delay_ms"),
            s.s("count"),
            num(s.n("ttfb_p50_ms"), 3),
            num(s.n("ttfb_p99_ms"), 3),
            num(s.n("total_p50_ms"), 3),
            s.s("errors"),
        )?;
    }
    writeln!(md)
}
