fn main() {
    println!("tlsmon");
}
