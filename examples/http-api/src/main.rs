//! `http-api`: see the library.

use clap::Parser;

#[tokio::main]
async fn main() {
    let cfg = http_api::Config::parse();
    let listener = match tokio::net::TcpListener::bind(cfg.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("http-api: cannot listen on {}: {e}", cfg.listen);
            std::process::exit(1);
        }
    };
    eprintln!(
        "http-api: listening on http://{} (THROTTLE {}<key> {} {} {} {} on {})",
        cfg.listen, cfg.key_prefix, cfg.rps, cfg.burst, cfg.window, cfg.cost, cfg.redis_url
    );
    if let Err(e) = http_api::serve(listener, cfg).await {
        eprintln!("http-api: {e}");
        std::process::exit(1);
    }
}
