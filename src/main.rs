//! The `workload-manager` binary: arguments, configuration, logging, then the
//! main loop.

use std::process::ExitCode;

use workload_manager::config::{Config, ProcessEnv};
use workload_manager::identity::NodeIdentity;

const HELP: &str = "\
workload-manager: keeps this node's workloads as the Node System backend wants them.

Usage: workload-manager [--help | --version | --print-config]
       workload-manager status [--json]   the running manager's status (table or JSON)
       workload-manager sync              ask the running manager to sync now

`status` and `sync` ask the manager listening on WM_LISTEN (on loopback when it
listens on all addresses): for `kubectl exec` in an image without curl. Exit
status 0 when it answered, 1 when not.

Configuration comes from the environment (see the README for every variable):
  NODE_SYSTEM_ENDPOINT                  backend base URL (required)
  NODE_PRIVATE_KEY / NODE_PRIVATE_KEY_FILE
                                        the node's secp256k1 key (one required)
  WM_LISTEN                             HTTP API address [0.0.0.0:8080]
  WM_NAMESPACE                          namespace managed [service-account namespace]
  WM_KUBE_API_URL, WM_KUBE_TOKEN_FILE, WM_KUBE_CA_FILE
                                        Kubernetes API [in-cluster]
  WM_SYNC_INTERVAL [10m]  WM_REPORT_INTERVAL [1m]  WM_UPDATE_INTERVAL [15m]
  WM_HEARTBEAT_TIMEOUT [30s]  WM_HTTP_TIMEOUT [10s]
  WM_UPDATE_S3_BUCKET, WM_UPDATE_S3_KEY, WM_UPDATE_S3_REGION, WM_UPDATE_S3_ENDPOINT,
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
                                        self-update (off unless the bucket is set)
  WM_SELF_DEPLOYMENT, WM_SELF_CONTAINER, POD_NAME, WM_STATE_DIR, WM_LOG [info]

Exit status: 0 after SIGTERM/SIGINT, 2 on invalid configuration, 1 on a fatal error.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => Mode::Run,
        ["--help"] | ["-h"] => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        ["--version"] | ["-V"] => {
            println!("workload-manager {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        ["--print-config"] => Mode::PrintConfig,
        ["status"] => return ask("GET", "/v1/status?format=text"),
        ["status", "--json"] => return ask("GET", "/v1/status"),
        ["sync"] => return ask("POST", "/v1/sync"),
        _ => {
            eprintln!("workload-manager: unknown arguments {args:?}; try --help");
            return ExitCode::from(2);
        }
    };
    let config = match Config::load(&ProcessEnv) {
        Ok(c) => c,
        Err(problems) => {
            eprintln!("workload-manager: invalid configuration:");
            for p in problems {
                eprintln!("  {p}");
            }
            return ExitCode::from(2);
        }
    };
    let node = match NodeIdentity::from_hex(config.node_key.expose()) {
        Ok(node) => node,
        Err(e) => {
            eprintln!("workload-manager: invalid configuration:\n  NODE_PRIVATE_KEY: {e}");
            return ExitCode::from(2);
        }
    };
    if let Mode::PrintConfig = mode {
        println!("{}NODE_ADDRESS={}", config.printable(), node.address());
        return ExitCode::SUCCESS;
    }
    if let Err(e) = simple_logger::SimpleLogger::new()
        .with_level(config.log_level)
        .init()
    {
        eprintln!("workload-manager: cannot start logging: {e}");
        return ExitCode::from(1);
    }
    workload_manager::memory::return_large_blocks();
    ExitCode::from(workload_manager::agent::main(config, node) as u8)
}

/// `status` and `sync`: one request to the running manager's own API.
fn ask(method: &str, path: &str) -> ExitCode {
    let listen = std::env::var("WM_LISTEN").unwrap_or_else(|_| "0.0.0.0:8080".into());
    let Ok(listen) = listen.trim().parse() else {
        eprintln!("workload-manager: WM_LISTEN: {listen:?} is not an address like 0.0.0.0:8080");
        return ExitCode::from(2);
    };
    let addr = workload_manager::local::target(listen);
    match workload_manager::local::call(addr, method, path) {
        Ok(answer) if (200..300).contains(&answer.status) => {
            let body = answer.body.trim_end();
            // `sync` answers with a one-line JSON message.
            match serde_json::from_str::<serde_json::Value>(body) {
                Ok(v) if method == "POST" => {
                    println!("{}", v["message"].as_str().unwrap_or(body))
                }
                _ => println!("{body}"),
            }
            ExitCode::SUCCESS
        }
        Ok(answer) => {
            eprintln!(
                "workload-manager: the manager at {addr} answered {}: {}",
                answer.status,
                answer.body.trim()
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("workload-manager: {e}");
            ExitCode::from(1)
        }
    }
}

enum Mode {
    Run,
    PrintConfig,
}
