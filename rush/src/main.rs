//! The `rush` binary: see the library for everything.

fn main() {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rush: cannot start the async runtime: {e}");
            std::process::exit(3);
        }
    };
    let code = runtime.block_on(rush::main_with_args(std::env::args_os().collect()));
    // Do not wait for tasks still blocked on the network.
    runtime.shutdown_background();
    std::process::exit(code);
}
