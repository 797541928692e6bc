//! Routes into workspaces: app hosts, Traefik configuration, the forwardAuth endpoint and
//! Guacamole tokens.

pub mod guacamole;
pub mod hosts;
pub mod traefik;
pub mod verify;
