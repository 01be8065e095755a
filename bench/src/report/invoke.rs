//! Section 5: invocation overhead through the Invoke API, and through LocalStack's Lambda.

use std::fmt::{self, Write as _};

use super::{Results, num};

pub(super) fn invoke(md: &mut String, r: &Results) -> fmt::Result {
    writeln!(
        md,
        "## 5. Invocation overhead (Invoke API, echo function)\n"
    )?;
    writeln!(
        md,
        "One invocation at a time: `POST /2015-03-31/functions/echo/invocations` with a function URL \
         event (`invoke-rtt`), against calling the same handler in-process (`invoke-rtt \
         --in-process`, and the Criterion bench `bench/benches/invoke.rs`).\n"
    )?;
    writeln!(
        md,
        "| path | calls | p50 ms | p99 ms | errors |\n| --- | ---: | ---: | ---: | ---: |"
    )?;
    for i in r.all("invoke", &[]) {
        writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            i.s("target"),
            i.s("count"),
            num(i.n("p50_ms"), 4),
            num(i.n("p99_ms"), 4),
            i.s("errors"),
        )?;
    }
    let api = r
        .one("invoke", &[("target", "invoke-api")])
        .and_then(|x| x.n("p50_ms"));
    let local = r
        .one("invoke", &[("target", "in-process")])
        .and_then(|x| x.n("p50_ms"));
    if let (Some(a), Some(l)) = (api, local) {
        writeln!(md, "\nInvoke API round trip adds {:.3} ms at p50.", a - l)?;
    }
    writeln!(md)?;
    localstack_lambda(md, r)
}

fn localstack_lambda(md: &mut String, r: &Results) -> fmt::Result {
    let p50 = |target| {
        r.one("invoke", &[("target", target)])
            .and_then(|x| x.n("p50_ms"))
    };
    let cold = r.all("lambda_cold", &[]);
    if p50("localstack-lambda").is_none() && cold.is_empty() {
        return Ok(());
    }
    writeln!(
        md,
        "### LocalStack's Lambda (`localstack-executor/`, no Docker)\n\n\
         *emulate* is `adapter emulate -- echo` alone (the Invoke API, as the Runtime Interface \
         Emulator is); *localstack-lambda* is the same echo zip created in LocalStack's Lambda, \
         whose `process` executor runs one `adapter emulate` per execution environment, invoked \
         through LocalStack's Invoke API (rows above). Cold start: a new function's first invoke \
         through LocalStack, request to reply, against spawning `adapter emulate` to its first \
         reply; one client (Python `http.client`) for both.\n"
    )?;
    if let (Some(ls), Some(emu)) = (p50("localstack-lambda"), p50("emulate")) {
        writeln!(
            md,
            "Warm: LocalStack's Lambda adds {:.3} ms at p50 over `adapter emulate` alone ({:.1}x).\n",
            ls - emu,
            ls / emu
        )?;
    }
    if !cold.is_empty() {
        writeln!(
            md,
            "| cold start | starts | p50 ms | max ms |\n| --- | ---: | ---: | ---: |"
        )?;
        for c in cold {
            writeln!(
                md,
                "| {} | {} | {} | {} |",
                c.s("target"),
                c.s("count"),
                num(c.n("p50_ms"), 1),
                num(c.n("max_ms"), 1)
            )?;
        }
        writeln!(md)?;
    }
    Ok(())
}
