//! Written by `scripts/vendor-graphiql.sh`; do not edit by hand. The vendored GraphiQL
//! files (see `assets/graphiql/VERSIONS.md`), embedded in the binary.

use super::Asset;

/// The vendored GraphiQL release.
pub const GRAPHIQL_VERSION: &str = "3.9.0";
/// The vendored React (and React DOM) release.
pub const REACT_VERSION: &str = "18.3.1";

/// Every vendored file, by its path under `/graphiql/`.
pub const FILES: &[Asset] = &[
    Asset {
        path: "react.production.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/react.production.min.js"
        )),
    },
    Asset {
        path: "react-dom.production.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/react-dom.production.min.js"
        )),
    },
    Asset {
        path: "graphiql.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/graphiql.min.js"
        )),
    },
    Asset {
        path: "graphiql.min.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/graphiql.min.css"
        )),
    },
    Asset {
        path: "files/16f89b26ede9d3df.woff2",
        content_type: "font/woff2",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/16f89b26ede9d3df.woff2"
        )),
    },
    Asset {
        path: "files/1af0ee2e409d753a.woff2",
        content_type: "font/woff2",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/1af0ee2e409d753a.woff2"
        )),
    },
    Asset {
        path: "files/1df1ae79b14180fb.woff2",
        content_type: "font/woff2",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/1df1ae79b14180fb.woff2"
        )),
    },
    Asset {
        path: "files/330d6e3b75a59f66.woff2",
        content_type: "font/woff2",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/330d6e3b75a59f66.woff2"
        )),
    },
    Asset {
        path: "files/3c8b5949070cb842.woff2",
        content_type: "font/woff2",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/3c8b5949070cb842.woff2"
        )),
    },
    Asset {
        path: "files/3d18ea30dd00ec35.woff2",
        content_type: "font/woff2",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/3d18ea30dd00ec35.woff2"
        )),
    },
    Asset {
        path: "files/3e70e149a35f394b.woff2",
        content_type: "font/woff2",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/3e70e149a35f394b.woff2"
        )),
    },
    Asset {
        path: "files/41b5c3b25f425819.woff2",
        content_type: "font/woff2",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/41b5c3b25f425819.woff2"
        )),
    },
    Asset {
        path: "files/44686a6044dd452f.woff",
        content_type: "font/woff",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/44686a6044dd452f.woff"
        )),
    },
    Asset {
        path: "files/49835b21c59b0d02.woff2",
        content_type: "font/woff2",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/49835b21c59b0d02.woff2"
        )),
    },
    Asset {
        path: "files/4f393c516f720fc9.woff2",
        content_type: "font/woff2",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/4f393c516f720fc9.woff2"
        )),
    },
    Asset {
        path: "files/514a8093c9062470.woff2",
        content_type: "font/woff2",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/514a8093c9062470.woff2"
        )),
    },
    Asset {
        path: "files/582ca1c5738fa269.woff2",
        content_type: "font/woff2",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/582ca1c5738fa269.woff2"
        )),
    },
    Asset {
        path: "files/61a5f4faff46d7ee.woff2",
        content_type: "font/woff2",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/61a5f4faff46d7ee.woff2"
        )),
    },
    Asset {
        path: "files/67c2ae85b61a7e1c.woff2",
        content_type: "font/woff2",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/67c2ae85b61a7e1c.woff2"
        )),
    },
    Asset {
        path: "files/75d4142764ce96e1.woff",
        content_type: "font/woff",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/75d4142764ce96e1.woff"
        )),
    },
    Asset {
        path: "files/796de064b8d80eba.woff2",
        content_type: "font/woff2",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/796de064b8d80eba.woff2"
        )),
    },
    Asset {
        path: "files/7e93534973a8e9ca.woff2",
        content_type: "font/woff2",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/7e93534973a8e9ca.woff2"
        )),
    },
    Asset {
        path: "files/7f4f58f89a10e711.woff2",
        content_type: "font/woff2",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/7f4f58f89a10e711.woff2"
        )),
    },
    Asset {
        path: "files/83572c3ab2cc39e3.woff2",
        content_type: "font/woff2",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/83572c3ab2cc39e3.woff2"
        )),
    },
    Asset {
        path: "files/893f834164c2a157.woff",
        content_type: "font/woff",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/893f834164c2a157.woff"
        )),
    },
    Asset {
        path: "files/9cfe0546be6c8e0e.woff2",
        content_type: "font/woff2",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/9cfe0546be6c8e0e.woff2"
        )),
    },
    Asset {
        path: "files/a269d3d076c42e10.woff2",
        content_type: "font/woff2",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/a269d3d076c42e10.woff2"
        )),
    },
    Asset {
        path: "files/a30bb5b73d0412df.woff",
        content_type: "font/woff",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/a30bb5b73d0412df.woff"
        )),
    },
    Asset {
        path: "files/aba273bbc6928e85.woff2",
        content_type: "font/woff2",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/aba273bbc6928e85.woff2"
        )),
    },
    Asset {
        path: "files/ada8787a8241bc6a.woff",
        content_type: "font/woff",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/ada8787a8241bc6a.woff"
        )),
    },
    Asset {
        path: "files/b970cabe604d6e78.png",
        content_type: "image/png",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/b970cabe604d6e78.png"
        )),
    },
    Asset {
        path: "files/bce2f309470952b7.woff2",
        content_type: "font/woff2",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/bce2f309470952b7.woff2"
        )),
    },
    Asset {
        path: "files/c8eabbb5502fb7a7.woff2",
        content_type: "font/woff2",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/c8eabbb5502fb7a7.woff2"
        )),
    },
    Asset {
        path: "files/cb9473427fb096e5.woff2",
        content_type: "font/woff2",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/cb9473427fb096e5.woff2"
        )),
    },
    Asset {
        path: "files/cd0a5100730fe067.woff2",
        content_type: "font/woff2",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/cd0a5100730fe067.woff2"
        )),
    },
    Asset {
        path: "files/dab91182a5ab309f.woff2",
        content_type: "font/woff2",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/dab91182a5ab309f.woff2"
        )),
    },
    Asset {
        path: "files/dfc28e6660bd890d.png",
        content_type: "image/png",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/dfc28e6660bd890d.png"
        )),
    },
    Asset {
        path: "files/e6abd95f5bbd4011.png",
        content_type: "image/png",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/e6abd95f5bbd4011.png"
        )),
    },
    Asset {
        path: "files/ea2297c23994ed1a.woff2",
        content_type: "font/woff2",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/ea2297c23994ed1a.woff2"
        )),
    },
    Asset {
        path: "files/edad7f7e15729b7d.woff2",
        content_type: "font/woff2",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/edad7f7e15729b7d.woff2"
        )),
    },
    Asset {
        path: "files/fce2b2365014baad.woff",
        content_type: "font/woff",
        bytes: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/graphiql/files/fce2b2365014baad.woff"
        )),
    },
];
