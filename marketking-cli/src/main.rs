//! `marketking`: placeholder until the CLI lands.

fn main() {
    eprintln!("marketking: the command-line tool is not built yet; see README.md");
    std::process::exit(2);
}
