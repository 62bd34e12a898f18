//! One module per `von` subcommand.
