//! Helpers for von's end-to-end tests: hosts as network namespaces with two
//! underlay links each, real agents, real programs, cleanup on every exit.
