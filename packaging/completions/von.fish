# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_von_global_optspecs
    string join \n h/help V/version
end

function __fish_von_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_von_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_von_using_subcommand
    set -l cmd (__fish_von_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c von -n "__fish_von_needs_command" -s h -l help -d 'Print help'
complete -c von -n "__fish_von_needs_command" -s V -l version -d 'Print version'
complete -c von -n "__fish_von_needs_command" -f -a "ca" -d 'A VON\'s certificate authority (`von ca init`)'
complete -c von -n "__fish_von_needs_command" -f -a "cert" -d 'Member certificates (`von cert issue`, `von cert show`)'
complete -c von -n "__fish_von_needs_command" -f -a "keymgr" -d 'The standalone key manager (`von keymgr --config FILE`) and its operations (`von keymgr revoke|rekey|status --config FILE`)'
complete -c von -n "__fish_von_needs_command" -f -a "up" -d 'Run the agent in the foreground (`von up --config FILE`)'
complete -c von -n "__fish_von_needs_command" -f -a "reload" -d 'Make the running agent read von.toml again (`von reload [--config FILE]`)'
complete -c von -n "__fish_von_needs_command" -f -a "status" -d 'What the running agent reports (`von status [--json] [--socket PATH]`)'
complete -c von -n "__fish_von_needs_command" -f -a "completions" -d 'A completion script for bash, zsh, fish, elvish or powershell (`von completions bash`)'
complete -c von -n "__fish_von_needs_command" -f -a "man" -d 'Write the man pages into a directory (packaging runs it; hidden)'
complete -c von -n "__fish_von_needs_command" -f -a "router" -d 'Shape a router\'s links for reserved ONs (`von router --config FILE`, `von router status`)'
complete -c von -n "__fish_von_needs_command" -f -a "reserve" -d 'Reservations on routers (`von reserve serve|add|list|release`)'
complete -c von -n "__fish_von_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c von -n "__fish_von_using_subcommand ca; and not __fish_seen_subcommand_from init upgrade help" -s h -l help -d 'Print help'
complete -c von -n "__fish_von_using_subcommand ca; and not __fish_seen_subcommand_from init upgrade help" -f -a "init" -d 'Create a new VON: its CA key (ca.key), certificate (ca.crt) and ledger'
complete -c von -n "__fish_von_using_subcommand ca; and not __fish_seen_subcommand_from init upgrade help" -f -a "upgrade" -d 'Give a CA directory made by an older von its ledger (ledger.json)'
complete -c von -n "__fish_von_using_subcommand ca; and not __fish_seen_subcommand_from init upgrade help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c von -n "__fish_von_using_subcommand ca; and __fish_seen_subcommand_from init" -l von -d 'The VON\'s name: a-z, 0-9 and \'-\', at most 11 characters' -r
complete -c von -n "__fish_von_using_subcommand ca; and __fish_seen_subcommand_from init" -l on-id -d 'The VON\'s globally unique ON id (1 to 4294967295), first 4 bytes of every frame' -r
complete -c von -n "__fish_von_using_subcommand ca; and __fish_seen_subcommand_from init" -l prefix -d 'The VON prefix, e.g. 100.64.0.0/24: every member\'s address must be a host of it; `von cert issue` refuses others' -r
complete -c von -n "__fish_von_using_subcommand ca; and __fish_seen_subcommand_from init" -l out -d 'Directory to write ca.crt and ca.key into (created if missing)' -r -F
complete -c von -n "__fish_von_using_subcommand ca; and __fish_seen_subcommand_from init" -l valid -d 'How long the CA is valid, in days' -r
complete -c von -n "__fish_von_using_subcommand ca; and __fish_seen_subcommand_from init" -l force -d 'Replace ca.crt and ca.key if they exist'
complete -c von -n "__fish_von_using_subcommand ca; and __fish_seen_subcommand_from init" -s h -l help -d 'Print help'
complete -c von -n "__fish_von_using_subcommand ca; and __fish_seen_subcommand_from upgrade" -l ca -d 'The CA directory (ca.crt, ca.key, issued.txt)' -r -F
complete -c von -n "__fish_von_using_subcommand ca; and __fish_seen_subcommand_from upgrade" -l prefix -d 'The VON prefix, e.g. 100.64.0.0/24' -r
complete -c von -n "__fish_von_using_subcommand ca; and __fish_seen_subcommand_from upgrade" -s h -l help -d 'Print help'
complete -c von -n "__fish_von_using_subcommand ca; and __fish_seen_subcommand_from help" -f -a "init" -d 'Create a new VON: its CA key (ca.key), certificate (ca.crt) and ledger'
complete -c von -n "__fish_von_using_subcommand ca; and __fish_seen_subcommand_from help" -f -a "upgrade" -d 'Give a CA directory made by an older von its ledger (ledger.json)'
complete -c von -n "__fish_von_using_subcommand ca; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c von -n "__fish_von_using_subcommand cert; and not __fish_seen_subcommand_from issue show list revoke help" -s h -l help -d 'Print help'
complete -c von -n "__fish_von_using_subcommand cert; and not __fish_seen_subcommand_from issue show list revoke help" -f -a "issue" -d 'Issue a member\'s keys (TLS and X25519) and certificate'
complete -c von -n "__fish_von_using_subcommand cert; and not __fish_seen_subcommand_from issue show list revoke help" -f -a "show" -d 'Print what a certificate says'
complete -c von -n "__fish_von_using_subcommand cert; and not __fish_seen_subcommand_from issue show list revoke help" -f -a "list" -d 'Print the CA\'s ledger: every certificate it issued'
complete -c von -n "__fish_von_using_subcommand cert; and not __fish_seen_subcommand_from issue show list revoke help" -f -a "revoke" -d 'Revoke the certificate last issued for a name: the ledger records its serial and CA/revoked.txt lists it, for routers and reservation services (their `revoked` setting) to refuse'
complete -c von -n "__fish_von_using_subcommand cert; and not __fish_seen_subcommand_from issue show list revoke help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c von -n "__fish_von_using_subcommand cert; and __fish_seen_subcommand_from issue" -l ca -d 'The CA directory written by `von ca init` (ca.crt, ca.key)' -r -F
complete -c von -n "__fish_von_using_subcommand cert; and __fish_seen_subcommand_from issue" -l name -d 'Member name, unique in the VON: a-z, 0-9 and \'-\', at most 63 characters' -r
complete -c von -n "__fish_von_using_subcommand cert; and __fish_seen_subcommand_from issue" -l addr -d 'The member\'s VON address and the VON prefix, e.g. 100.64.0.1/24. Required for a member; optional for `--role keymgr|router|reserve`: those have no VON address (only the certificate\'s prefix is read), so it defaults to the first host of the CA\'s prefix and is not reserved' -r
complete -c von -n "__fish_von_using_subcommand cert; and __fish_seen_subcommand_from issue" -l valid -d 'Validity in days, from now' -r
complete -c von -n "__fish_von_using_subcommand cert; and __fish_seen_subcommand_from issue" -l role -d '`member`; `keymgr` for the key manager\'s own certificate; `router` for a router (`von router`) and `reserve` for a reservation service replica (`von reserve serve`), which authenticate each other with them (docs/isolation.md); these two get no NAME.noise.key' -r -f -a "member\t''
keymgr\t''
router\t''
reserve\t''"
complete -c von -n "__fish_von_using_subcommand cert; and __fish_seen_subcommand_from issue" -l out -d 'Directory to write NAME.crt, NAME.key and NAME.noise.key into' -r -F
complete -c von -n "__fish_von_using_subcommand cert; and __fish_seen_subcommand_from issue" -l force -d 'Replace existing files'
complete -c von -n "__fish_von_using_subcommand cert; and __fish_seen_subcommand_from issue" -s h -l help -d 'Print help'
complete -c von -n "__fish_von_using_subcommand cert; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c von -n "__fish_von_using_subcommand cert; and __fish_seen_subcommand_from list" -l ca -d 'The CA directory (ca.crt, ca.key, ledger.json)' -r -F
complete -c von -n "__fish_von_using_subcommand cert; and __fish_seen_subcommand_from list" -l json -d 'Print the ledger as JSON'
complete -c von -n "__fish_von_using_subcommand cert; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c von -n "__fish_von_using_subcommand cert; and __fish_seen_subcommand_from revoke" -l ca -d 'The CA directory (ca.crt, ca.key, ledger.json)' -r -F
complete -c von -n "__fish_von_using_subcommand cert; and __fish_seen_subcommand_from revoke" -l name -d 'The name whose latest certificate is revoked' -r
complete -c von -n "__fish_von_using_subcommand cert; and __fish_seen_subcommand_from revoke" -s h -l help -d 'Print help'
complete -c von -n "__fish_von_using_subcommand cert; and __fish_seen_subcommand_from help" -f -a "issue" -d 'Issue a member\'s keys (TLS and X25519) and certificate'
complete -c von -n "__fish_von_using_subcommand cert; and __fish_seen_subcommand_from help" -f -a "show" -d 'Print what a certificate says'
complete -c von -n "__fish_von_using_subcommand cert; and __fish_seen_subcommand_from help" -f -a "list" -d 'Print the CA\'s ledger: every certificate it issued'
complete -c von -n "__fish_von_using_subcommand cert; and __fish_seen_subcommand_from help" -f -a "revoke" -d 'Revoke the certificate last issued for a name: the ledger records its serial and CA/revoked.txt lists it, for routers and reservation services (their `revoked` setting) to refuse'
complete -c von -n "__fish_von_using_subcommand cert; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c von -n "__fish_von_using_subcommand keymgr; and not __fish_seen_subcommand_from revoke rekey status help" -l config -d 'The key manager\'s configuration (keymgr.toml). Or the agent\'s von.toml, for a key manager it embeds' -r -F
complete -c von -n "__fish_von_using_subcommand keymgr; and not __fish_seen_subcommand_from revoke rekey status help" -l von -d 'With a von.toml: the VON whose embedded key manager to address (needed only when the agent embeds more than one)' -r
complete -c von -n "__fish_von_using_subcommand keymgr; and not __fish_seen_subcommand_from revoke rekey status help" -s h -l help -d 'Print help'
complete -c von -n "__fish_von_using_subcommand keymgr; and not __fish_seen_subcommand_from revoke rekey status help" -f -a "revoke" -d 'Revoke a member: it is dropped and the group rekeyed at once (if the key manager runs) and refused from then on'
complete -c von -n "__fish_von_using_subcommand keymgr; and not __fish_seen_subcommand_from revoke rekey status help" -f -a "rekey" -d 'Rekey now with the same members (a new epoch and group key)'
complete -c von -n "__fish_von_using_subcommand keymgr; and not __fish_seen_subcommand_from revoke rekey status help" -f -a "status" -d 'The committed epoch, the epoch being prepared, and the members'
complete -c von -n "__fish_von_using_subcommand keymgr; and not __fish_seen_subcommand_from revoke rekey status help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c von -n "__fish_von_using_subcommand keymgr; and __fish_seen_subcommand_from revoke" -l name -d 'The member\'s name, as in its certificate' -r
complete -c von -n "__fish_von_using_subcommand keymgr; and __fish_seen_subcommand_from revoke" -l config -d 'The key manager\'s configuration (keymgr.toml). Or the agent\'s von.toml, for a key manager it embeds' -r -F
complete -c von -n "__fish_von_using_subcommand keymgr; and __fish_seen_subcommand_from revoke" -l von -d 'With a von.toml: the VON whose embedded key manager to address (needed only when the agent embeds more than one)' -r
complete -c von -n "__fish_von_using_subcommand keymgr; and __fish_seen_subcommand_from revoke" -s h -l help -d 'Print help'
complete -c von -n "__fish_von_using_subcommand keymgr; and __fish_seen_subcommand_from rekey" -l config -d 'The key manager\'s configuration (keymgr.toml). Or the agent\'s von.toml, for a key manager it embeds' -r -F
complete -c von -n "__fish_von_using_subcommand keymgr; and __fish_seen_subcommand_from rekey" -l von -d 'With a von.toml: the VON whose embedded key manager to address (needed only when the agent embeds more than one)' -r
complete -c von -n "__fish_von_using_subcommand keymgr; and __fish_seen_subcommand_from rekey" -s h -l help -d 'Print help'
complete -c von -n "__fish_von_using_subcommand keymgr; and __fish_seen_subcommand_from status" -l config -d 'The key manager\'s configuration (keymgr.toml). Or the agent\'s von.toml, for a key manager it embeds' -r -F
complete -c von -n "__fish_von_using_subcommand keymgr; and __fish_seen_subcommand_from status" -l von -d 'With a von.toml: the VON whose embedded key manager to address (needed only when the agent embeds more than one)' -r
complete -c von -n "__fish_von_using_subcommand keymgr; and __fish_seen_subcommand_from status" -l json -d 'Print JSON instead of text'
complete -c von -n "__fish_von_using_subcommand keymgr; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c von -n "__fish_von_using_subcommand keymgr; and __fish_seen_subcommand_from help" -f -a "revoke" -d 'Revoke a member: it is dropped and the group rekeyed at once (if the key manager runs) and refused from then on'
complete -c von -n "__fish_von_using_subcommand keymgr; and __fish_seen_subcommand_from help" -f -a "rekey" -d 'Rekey now with the same members (a new epoch and group key)'
complete -c von -n "__fish_von_using_subcommand keymgr; and __fish_seen_subcommand_from help" -f -a "status" -d 'The committed epoch, the epoch being prepared, and the members'
complete -c von -n "__fish_von_using_subcommand keymgr; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c von -n "__fish_von_using_subcommand up" -l config -d 'The agent\'s configuration (von.toml)' -r -F
complete -c von -n "__fish_von_using_subcommand up" -l check -d 'Only validate: the config, every view file and every certificate and key it names; change nothing and exit 0 if all is well'
complete -c von -n "__fish_von_using_subcommand up" -s h -l help -d 'Print help'
complete -c von -n "__fish_von_using_subcommand reload" -l config -d 'The agent\'s configuration (von.toml); its `control_socket` finds the agent' -r -F
complete -c von -n "__fish_von_using_subcommand reload" -s h -l help -d 'Print help'
complete -c von -n "__fish_von_using_subcommand status" -l config -d 'The agent\'s configuration: its `control_socket` names the socket (only that key is read). A missing default file means the default socket' -r -F
complete -c von -n "__fish_von_using_subcommand status" -l socket -d 'The agent\'s control socket; overrides the config\'s `control_socket`' -r -F
complete -c von -n "__fish_von_using_subcommand status" -l json -d 'Print the machine-readable JSON document'
complete -c von -n "__fish_von_using_subcommand status" -l watch -d 'Show the tables again every second, clearing the screen, until Ctrl-C (a live view: alarms, path health, counters)'
complete -c von -n "__fish_von_using_subcommand status" -s h -l help -d 'Print help'
complete -c von -n "__fish_von_using_subcommand completions" -s h -l help -d 'Print help'
complete -c von -n "__fish_von_using_subcommand man" -l dir -d 'Where to write the pages; created if missing' -r -F
complete -c von -n "__fish_von_using_subcommand man" -l completions -d 'Where to write the packaged completion scripts; created if missing' -r -F
complete -c von -n "__fish_von_using_subcommand man" -s h -l help -d 'Print help'
complete -c von -n "__fish_von_using_subcommand router; and not __fish_seen_subcommand_from status help" -l config -d 'The router\'s configuration (router.toml); runs it in the foreground' -r -F
complete -c von -n "__fish_von_using_subcommand router; and not __fish_seen_subcommand_from status help" -s h -l help -d 'Print help'
complete -c von -n "__fish_von_using_subcommand router; and not __fish_seen_subcommand_from status help" -f -a "status" -d 'Reservations, link budgets and per-ON counters of a running router'
complete -c von -n "__fish_von_using_subcommand router; and not __fish_seen_subcommand_from status help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c von -n "__fish_von_using_subcommand router; and __fish_seen_subcommand_from status" -l addr -d 'The router\'s control address (its `listen`)' -r
complete -c von -n "__fish_von_using_subcommand router; and __fish_seen_subcommand_from status" -l ca -d 'The CA certificate of router control (reserve.toml `ca`)' -r -F
complete -c von -n "__fish_von_using_subcommand router; and __fish_seen_subcommand_from status" -l cert -d 'A `reserve` certificate (routers answer only the reservation service\'s role), e.g. reserve.toml `cert`' -r -F
complete -c von -n "__fish_von_using_subcommand router; and __fish_seen_subcommand_from status" -l tls-key -d 'Its TLS private key (reserve.toml `tls_key`)' -r -F
complete -c von -n "__fish_von_using_subcommand router; and __fish_seen_subcommand_from status" -l name -d 'The router\'s name: refuse a router whose certificate names another' -r
complete -c von -n "__fish_von_using_subcommand router; and __fish_seen_subcommand_from status" -l revoked -d 'The CA\'s revocation list: refuse a revoked router' -r -F
complete -c von -n "__fish_von_using_subcommand router; and __fish_seen_subcommand_from status" -l json -d 'Print the JSON document'
complete -c von -n "__fish_von_using_subcommand router; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c von -n "__fish_von_using_subcommand router; and __fish_seen_subcommand_from help" -f -a "status" -d 'Reservations, link budgets and per-ON counters of a running router'
complete -c von -n "__fish_von_using_subcommand router; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c von -n "__fish_von_using_subcommand reserve; and not __fish_seen_subcommand_from serve add list release help" -s h -l help -d 'Print help'
complete -c von -n "__fish_von_using_subcommand reserve; and not __fish_seen_subcommand_from serve add list release help" -f -a "serve" -d 'Run the reservation service in the foreground (renews leases)'
complete -c von -n "__fish_von_using_subcommand reserve; and not __fish_seen_subcommand_from serve add list release help" -f -a "add" -d 'Reserve a VON\'s rate on every link of its path (all or nothing)'
complete -c von -n "__fish_von_using_subcommand reserve; and not __fish_seen_subcommand_from serve add list release help" -f -a "list" -d 'The reservations the service holds'
complete -c von -n "__fish_von_using_subcommand reserve; and not __fish_seen_subcommand_from serve add list release help" -f -a "release" -d 'Release a VON\'s reservation on every router'
complete -c von -n "__fish_von_using_subcommand reserve; and not __fish_seen_subcommand_from serve add list release help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c von -n "__fish_von_using_subcommand reserve; and __fish_seen_subcommand_from serve" -l config -d 'The service\'s configuration (reserve.toml)' -r -F
complete -c von -n "__fish_von_using_subcommand reserve; and __fish_seen_subcommand_from serve" -s h -l help -d 'Print help'
complete -c von -n "__fish_von_using_subcommand reserve; and __fish_seen_subcommand_from add" -l socket -d 'The service\'s socket (reserve.toml `socket`); repeat for each replica of a service on etcd: the one that leads answers' -r -F
complete -c von -n "__fish_von_using_subcommand reserve; and __fish_seen_subcommand_from add" -l name -d 'The VON\'s name' -r
complete -c von -n "__fish_von_using_subcommand reserve; and __fish_seen_subcommand_from add" -l on-id -d 'The VON\'s ON id' -r
complete -c von -n "__fish_von_using_subcommand reserve; and __fish_seen_subcommand_from add" -l rate -d 'The contracted rate of inner packets, as in von.toml (e.g. 20mbit)' -r
complete -c von -n "__fish_von_using_subcommand reserve; and __fish_seen_subcommand_from add" -l packet -d 'Inner packet size the wire rate is computed for [default: the agent\'s default MTU over the path\'s families: 1432 over IPv4 only, 1412 once a path entry is IPv6]' -r
complete -c von -n "__fish_von_using_subcommand reserve; and __fish_seen_subcommand_from add" -l dscp -d 'The VON\'s DSCP' -r
complete -c von -n "__fish_von_using_subcommand reserve; and __fish_seen_subcommand_from add" -l port -d 'The VON\'s underlay UDP port' -r
complete -c von -n "__fish_von_using_subcommand reserve; and __fish_seen_subcommand_from add" -l path -d 'A link a copy of the frames leaves by, ROUTER:DEV for a copy over IPv4, ROUTER:DEV:ipv6 for one over IPv6 (40-byte outer header: 20 bytes more per packet on the wire); repeat per link, and twice for a link carrying both underlays' -r
complete -c von -n "__fish_von_using_subcommand reserve; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c von -n "__fish_von_using_subcommand reserve; and __fish_seen_subcommand_from list" -l socket -d 'A service replica\'s socket; repeat for each replica (the one that leads answers)' -r -F
complete -c von -n "__fish_von_using_subcommand reserve; and __fish_seen_subcommand_from list" -l json -d 'Print JSON'
complete -c von -n "__fish_von_using_subcommand reserve; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c von -n "__fish_von_using_subcommand reserve; and __fish_seen_subcommand_from release" -l socket -d 'A service replica\'s socket; repeat for each replica' -r -F
complete -c von -n "__fish_von_using_subcommand reserve; and __fish_seen_subcommand_from release" -l on-id -r
complete -c von -n "__fish_von_using_subcommand reserve; and __fish_seen_subcommand_from release" -s h -l help -d 'Print help'
complete -c von -n "__fish_von_using_subcommand reserve; and __fish_seen_subcommand_from help" -f -a "serve" -d 'Run the reservation service in the foreground (renews leases)'
complete -c von -n "__fish_von_using_subcommand reserve; and __fish_seen_subcommand_from help" -f -a "add" -d 'Reserve a VON\'s rate on every link of its path (all or nothing)'
complete -c von -n "__fish_von_using_subcommand reserve; and __fish_seen_subcommand_from help" -f -a "list" -d 'The reservations the service holds'
complete -c von -n "__fish_von_using_subcommand reserve; and __fish_seen_subcommand_from help" -f -a "release" -d 'Release a VON\'s reservation on every router'
complete -c von -n "__fish_von_using_subcommand reserve; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c von -n "__fish_von_using_subcommand help; and not __fish_seen_subcommand_from ca cert keymgr up reload status completions man router reserve help" -f -a "ca" -d 'A VON\'s certificate authority (`von ca init`)'
complete -c von -n "__fish_von_using_subcommand help; and not __fish_seen_subcommand_from ca cert keymgr up reload status completions man router reserve help" -f -a "cert" -d 'Member certificates (`von cert issue`, `von cert show`)'
complete -c von -n "__fish_von_using_subcommand help; and not __fish_seen_subcommand_from ca cert keymgr up reload status completions man router reserve help" -f -a "keymgr" -d 'The standalone key manager (`von keymgr --config FILE`) and its operations (`von keymgr revoke|rekey|status --config FILE`)'
complete -c von -n "__fish_von_using_subcommand help; and not __fish_seen_subcommand_from ca cert keymgr up reload status completions man router reserve help" -f -a "up" -d 'Run the agent in the foreground (`von up --config FILE`)'
complete -c von -n "__fish_von_using_subcommand help; and not __fish_seen_subcommand_from ca cert keymgr up reload status completions man router reserve help" -f -a "reload" -d 'Make the running agent read von.toml again (`von reload [--config FILE]`)'
complete -c von -n "__fish_von_using_subcommand help; and not __fish_seen_subcommand_from ca cert keymgr up reload status completions man router reserve help" -f -a "status" -d 'What the running agent reports (`von status [--json] [--socket PATH]`)'
complete -c von -n "__fish_von_using_subcommand help; and not __fish_seen_subcommand_from ca cert keymgr up reload status completions man router reserve help" -f -a "completions" -d 'A completion script for bash, zsh, fish, elvish or powershell (`von completions bash`)'
complete -c von -n "__fish_von_using_subcommand help; and not __fish_seen_subcommand_from ca cert keymgr up reload status completions man router reserve help" -f -a "man" -d 'Write the man pages into a directory (packaging runs it; hidden)'
complete -c von -n "__fish_von_using_subcommand help; and not __fish_seen_subcommand_from ca cert keymgr up reload status completions man router reserve help" -f -a "router" -d 'Shape a router\'s links for reserved ONs (`von router --config FILE`, `von router status`)'
complete -c von -n "__fish_von_using_subcommand help; and not __fish_seen_subcommand_from ca cert keymgr up reload status completions man router reserve help" -f -a "reserve" -d 'Reservations on routers (`von reserve serve|add|list|release`)'
complete -c von -n "__fish_von_using_subcommand help; and not __fish_seen_subcommand_from ca cert keymgr up reload status completions man router reserve help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c von -n "__fish_von_using_subcommand help; and __fish_seen_subcommand_from ca" -f -a "init" -d 'Create a new VON: its CA key (ca.key), certificate (ca.crt) and ledger'
complete -c von -n "__fish_von_using_subcommand help; and __fish_seen_subcommand_from ca" -f -a "upgrade" -d 'Give a CA directory made by an older von its ledger (ledger.json)'
complete -c von -n "__fish_von_using_subcommand help; and __fish_seen_subcommand_from cert" -f -a "issue" -d 'Issue a member\'s keys (TLS and X25519) and certificate'
complete -c von -n "__fish_von_using_subcommand help; and __fish_seen_subcommand_from cert" -f -a "show" -d 'Print what a certificate says'
complete -c von -n "__fish_von_using_subcommand help; and __fish_seen_subcommand_from cert" -f -a "list" -d 'Print the CA\'s ledger: every certificate it issued'
complete -c von -n "__fish_von_using_subcommand help; and __fish_seen_subcommand_from cert" -f -a "revoke" -d 'Revoke the certificate last issued for a name: the ledger records its serial and CA/revoked.txt lists it, for routers and reservation services (their `revoked` setting) to refuse'
complete -c von -n "__fish_von_using_subcommand help; and __fish_seen_subcommand_from keymgr" -f -a "revoke" -d 'Revoke a member: it is dropped and the group rekeyed at once (if the key manager runs) and refused from then on'
complete -c von -n "__fish_von_using_subcommand help; and __fish_seen_subcommand_from keymgr" -f -a "rekey" -d 'Rekey now with the same members (a new epoch and group key)'
complete -c von -n "__fish_von_using_subcommand help; and __fish_seen_subcommand_from keymgr" -f -a "status" -d 'The committed epoch, the epoch being prepared, and the members'
complete -c von -n "__fish_von_using_subcommand help; and __fish_seen_subcommand_from router" -f -a "status" -d 'Reservations, link budgets and per-ON counters of a running router'
complete -c von -n "__fish_von_using_subcommand help; and __fish_seen_subcommand_from reserve" -f -a "serve" -d 'Run the reservation service in the foreground (renews leases)'
complete -c von -n "__fish_von_using_subcommand help; and __fish_seen_subcommand_from reserve" -f -a "add" -d 'Reserve a VON\'s rate on every link of its path (all or nothing)'
complete -c von -n "__fish_von_using_subcommand help; and __fish_seen_subcommand_from reserve" -f -a "list" -d 'The reservations the service holds'
complete -c von -n "__fish_von_using_subcommand help; and __fish_seen_subcommand_from reserve" -f -a "release" -d 'Release a VON\'s reservation on every router'
