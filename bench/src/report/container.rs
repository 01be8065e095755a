//! Section 7: the image: its size, a container's start to ready and to healthy, and the worker's
//! drain inside a container beside the same drain as host processes (section 3).

use std::fmt::{self, Write as _};

use super::{Results, median, num, ratio};

pub(super) fn container(md: &mut String, r: &Results) -> fmt::Result {
    let image = r.one("image", &[]);
    let starts = r.all("container_start", &[]);
    let drains = r.all("container_drain", &[]);
    if image.is_none() && starts.is_empty() && drains.is_empty() {
        return Ok(());
    }
    writeln!(
        md,
        "## 7. The image and its containers (Docker, `scripts/image`)\n\n\
         The image `scripts/image` builds from the `Dockerfile` (with this run's Cargo profile), its \
         containers run from the ECS task definitions by `deploy/containers.py`, on the host \
         network.\n"
    )?;
    if let Some(i) = image {
        writeln!(
            md,
            "Image: **{} MiB** in {} layers, of which the Debian slim base is {} MiB.\n",
            num(i.n("size_mib"), 1),
            i.s("layers"),
            num(i.n("base_mib"), 1),
        )?;
    }
    if !starts.is_empty() {
        let ready = median(starts.iter().filter_map(|s| s.n("ready_ms")).collect());
        let healthy = median(starts.iter().filter_map(|s| s.n("healthy_ms")).collect());
        let interval = starts.first().map_or("–", |s| s.s("health_interval_s"));
        writeln!(
            md,
            "API container, `docker run` to ready (`/readyz` answers 200): **{} ms** (median of {}); \
             to *healthy* in `docker inspect`: {} ms. Docker runs the first health check one \
             interval after the start, and the task definition's interval is {} s (ECS does the \
             same), so *healthy* measures the interval, *ready* the image.\n",
            num(ready, 0),
            starts.len(),
            num(healthy, 0),
            interval,
        )?;
    }
    if !drains.is_empty() {
        writeln!(
            md,
            "| worker | concurrency | batch | tasks | wall s (container) | wall s (host, section 3) | container / host |\n\
             | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
        )?;
        for d in drains {
            let filter = [
                ("concurrency", d.s("concurrency")),
                ("batch", d.s("batch")),
                ("tasks", d.s("tasks")),
            ];
            let host = r.one("drain", &filter).and_then(|h| h.n("wall_s"));
            writeln!(
                md,
                "| `adapter sqs -- sleep` | {} | {} | {} | {} | {} | {} |",
                d.s("concurrency"),
                d.s("batch"),
                d.s("tasks"),
                num(d.n("wall_s"), 2),
                num(host, 2),
                num(ratio(d.n("wall_s"), host), 2),
            )?;
        }
        writeln!(md)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_drain_sits_beside_the_host_drain_of_the_same_plan() {
        let r = Results::parse(
            "bench image size_mib=116.1 base_mib=71.4 layers=5\n\
             bench container_start role=api run=1 ready_ms=300 healthy_ms=15100 health_interval_s=15\n\
             bench container_start role=api run=2 ready_ms=280 healthy_ms=15200 health_interval_s=15\n\
             bench drain concurrency=100 batch=1 tasks=1000 wall_s=10.5 complete=true\n\
             bench drain concurrency=10 batch=1 tasks=1000 wall_s=100.9 complete=true\n\
             bench container_drain concurrency=100 batch=1 tasks=1000 wall_s=11.55 complete=true\n",
        );
        let mut md = String::new();
        container(&mut md, &r).expect("writes");
        assert!(md.contains("**116.1 MiB** in 5 layers"), "{md}");
        assert!(md.contains("**290 ms** (median of 2)"), "{md}");
        assert!(
            md.contains("| 100 | 1 | 1000 | 11.55 | 10.50 | 1.10 |"),
            "{md}"
        );
    }

    #[test]
    fn no_section_without_container_figures() {
        let mut md = String::new();
        container(
            &mut md,
            &Results::parse("bench drain concurrency=1 wall_s=1\n"),
        )
        .expect("writes");
        assert!(md.is_empty());
    }
}
