//! Routes into workspaces: Traefik configuration, the forwardAuth endpoint, Berth's own app
//! gateway and Guacamole tokens. (The app host templates they share live in `crate::hosts`.)

pub mod app_gateway;
pub mod guacamole;
pub mod traefik;
pub mod verify;
