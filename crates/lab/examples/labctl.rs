//! Drive the lab by hand: `cargo run -p provision-lab --example labctl -- up 4`.
//! Commands: image [OS] | up N [OS] | down | status | create | destroy NAME | ssh NAME [CMD...] | fresh-and-exit
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::Instant;

fn main() {
    tracing_subscriber_init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let lab = lab::Lab::open_default().unwrap_or_else(|e| fail(e));
    let started = Instant::now();
    let os_arg = |i: usize| -> lab::Os {
        args.get(i)
            .map(|s| s.parse().unwrap_or_else(|e| fail(e)))
            .unwrap_or(lab::Os::DEFAULT)
    };
    match args.first().map(String::as_str) {
        Some("image") => {
            let img = lab.ensure_base_image(os_arg(1)).unwrap_or_else(|e| fail(e));
            println!("{img:?}");
        }
        Some("up") => {
            let n = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(1);
            let report = lab
                .up(n, lab::HostSpec::new(os_arg(2)))
                .unwrap_or_else(|e| fail(e));
            for h in &report.hosts {
                println!(
                    "{} {} nspawn={} leader={} iface={}",
                    h.name, h.address, h.nspawn_pid, h.leader_pid, h.iface
                );
            }
            println!("inventory: {}", lab.inventory_path().display());
        }
        Some("create") => {
            let h = lab
                .create_host(lab::HostSpec::new(os_arg(1)))
                .unwrap_or_else(|e| fail(e));
            println!("{h:?}");
        }
        Some("fresh-and-exit") => {
            // A test host whose process exits without its guard: an orphan.
            let h = lab::testing::fresh_host_in(lab.clone());
            println!("{} owned by pid {}", h.name, std::process::id());
            std::process::exit(0);
        }
        Some("destroy") => lab.destroy_host(&args[1]).unwrap_or_else(|e| fail(e)),
        Some("down") => println!("{:?}", lab.down().unwrap_or_else(|e| fail(e))),
        Some("status") => {
            for s in lab.status().unwrap_or_else(|e| fail(e)) {
                println!("{s:?}");
            }
        }
        Some("ssh") => {
            let mut c = lab.ssh_command(&args[1]).unwrap_or_else(|e| fail(e));
            c.args(&args[2..]);
            let st = c.status().expect("ssh");
            std::process::exit(st.code().unwrap_or(1));
        }
        _ => fail(
            "usage: labctl image [OS] | up N [OS] | down | status | create | destroy NAME | ssh NAME [CMD...]",
        ),
    }
    eprintln!("took {:.2} s", started.elapsed().as_secs_f64());
}

fn tracing_subscriber_init() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("lab=info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

fn fail(e: impl std::fmt::Display) -> ! {
    eprintln!("error: {e}");
    std::process::exit(1)
}
