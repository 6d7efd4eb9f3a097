//! The console page's files, compiled into the binary from `devstack/console/`.

/// One static file: its name under `/`, its content type and its bytes.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

macro_rules! asset {
    ($name:literal, $content_type:literal) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_str!(concat!("../../console/", $name)),
        }
    };
}

/// Every file the page loads. `index.html` is also served at `/`;
/// `client.js` is the client library (`clients/js`), served from its one source.
pub const ASSETS: &[Asset] = &[
    Asset {
        name: "client.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../../clients/js/src/index.js"),
    },
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("connection.js", "text/javascript; charset=utf-8"),
    asset!("frames.js", "text/javascript; charset=utf-8"),
    asset!("live.js", "text/javascript; charset=utf-8"),
];

pub fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.name == name)
}
