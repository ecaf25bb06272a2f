//! Writes `envoy-test/configs/*.yaml` (the docker-compose Envoy configs) from the bed's builders.

fn main() {
    let dir = meshtriage_envoy_test::configs::dir();
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in meshtriage_envoy_test::configs::render() {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        println!("wrote {}", path.display());
    }
}
