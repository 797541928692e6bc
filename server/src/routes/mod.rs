//! Routes into workspaces: Traefik configuration, the forwardAuth endpoint and Guacamole
//! tokens. (The app host templates they share live in `crate::hosts`.)

pub mod guacamole;
pub mod traefik;
pub mod verify;
