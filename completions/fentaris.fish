# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_fentaris_global_optspecs
    string join \n config= h/help V/version
end

function __fish_fentaris_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_fentaris_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_fentaris_using_subcommand
    set -l cmd (__fish_fentaris_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c fentaris -n "__fish_fentaris_needs_command" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_needs_command" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_needs_command" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_needs_command" -f -a "init" -d 'Create .fentaris/ with a deny-by-default starter config'
complete -c fentaris -n "__fish_fentaris_needs_command" -f -a "config" -d 'Print the config\'s JSON Schema, or the resolved config'
complete -c fentaris -n "__fish_fentaris_needs_command" -f -a "policy" -d 'Check, explain and test policy'
complete -c fentaris -n "__fish_fentaris_needs_command" -f -a "serve" -d 'Run the proxy (streamable HTTP, or --stdio for one client)'
complete -c fentaris -n "__fish_fentaris_needs_command" -f -a "auth" -d 'Client API keys'
complete -c fentaris -n "__fish_fentaris_needs_command" -f -a "credentials" -d 'Upstream secrets in the vault'
complete -c fentaris -n "__fish_fentaris_needs_command" -f -a "vault" -d 'The vault: status, rekey, trust, recipients'
complete -c fentaris -n "__fish_fentaris_needs_command" -f -a "logs" -d 'Read the audit trail: tail, summary, verify'
complete -c fentaris -n "__fish_fentaris_needs_command" -f -a "tools" -d 'The upstreams\' tools, prompts and resources; pin them (lock) and show drift (diff)'
complete -c fentaris -n "__fish_fentaris_needs_command" -f -a "connect" -d 'Point an MCP client (Claude Code, Claude Desktop, Cursor, VS Code) at this Fentaris'
complete -c fentaris -n "__fish_fentaris_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c fentaris -n "__fish_fentaris_needs_command" -f -a "doctor" -d 'Check this machine can run the config: ports, upstream commands, Node, vault key, Landlock'
complete -c fentaris -n "__fish_fentaris_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fentaris -n "__fish_fentaris_using_subcommand init" -l dir -d 'Folder in which to create .fentaris/ (default: the working directory)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand init" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand init" -l force -d 'Overwrite an existing .fentaris/config.json'
complete -c fentaris -n "__fish_fentaris_using_subcommand init" -l no-vault -d 'Do not create the vault and its key now (they are created on first write)'
complete -c fentaris -n "__fish_fentaris_using_subcommand init" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_using_subcommand init" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand config; and not __fish_seen_subcommand_from schema show help" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand config; and not __fish_seen_subcommand_from schema show help" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_using_subcommand config; and not __fish_seen_subcommand_from schema show help" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand config; and not __fish_seen_subcommand_from schema show help" -f -a "schema" -d 'Print the JSON Schema of config.json (generated from the types)'
complete -c fentaris -n "__fish_fentaris_using_subcommand config; and not __fish_seen_subcommand_from schema show help" -f -a "show" -d 'Print the resolved config, defaults filled in (credential sources shown as references)'
complete -c fentaris -n "__fish_fentaris_using_subcommand config; and not __fish_seen_subcommand_from schema show help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fentaris -n "__fish_fentaris_using_subcommand config; and __fish_seen_subcommand_from schema" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand config; and __fish_seen_subcommand_from schema" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_using_subcommand config; and __fish_seen_subcommand_from schema" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand config; and __fish_seen_subcommand_from show" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand config; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_using_subcommand config; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "schema" -d 'Print the JSON Schema of config.json (generated from the types)'
complete -c fentaris -n "__fish_fentaris_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "show" -d 'Print the resolved config, defaults filled in (credential sources shown as references)'
complete -c fentaris -n "__fish_fentaris_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and not __fish_seen_subcommand_from check explain test help" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and not __fish_seen_subcommand_from check explain test help" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and not __fish_seen_subcommand_from check explain test help" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and not __fish_seen_subcommand_from check explain test help" -f -a "check" -d 'Validate the config: every finding with a code, a location and help'
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and not __fish_seen_subcommand_from check explain test help" -f -a "explain" -d 'Explain the decision for one request: the deciding rule, rules that lost, near misses'
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and not __fish_seen_subcommand_from check explain test help" -f -a "test" -d 'Run policy test cases (default: policy-tests.json beside the config)'
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and not __fish_seen_subcommand_from check explain test help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and __fish_seen_subcommand_from check" -l format -d 'Output format' -r -f -a "human\t'Source line with a caret (colour on a TTY unless NO_COLOR)'
json\t''
sarif\t'SARIF 2.1.0 for GitHub code scanning'
github\t'GitHub Actions annotations (::error file=…,line=…::)'"
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and __fish_seen_subcommand_from check" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and __fish_seen_subcommand_from check" -l deny-warnings -d 'Fail (exit 1) on security warnings and warnings too'
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and __fish_seen_subcommand_from check" -l online -d 'Also start the upstreams and report tools and prompts that drifted from tools.lock.json (FNT104)'
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and __fish_seen_subcommand_from check" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and __fish_seen_subcommand_from explain" -l user -d 'The user (subject) making the request' -r
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and __fish_seen_subcommand_from explain" -l server -d 'The server, by its config name' -r
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and __fish_seen_subcommand_from explain" -l request-id -d 'Replay the decision of a logged request (the `request` column of `fentaris logs tail`) under the current config' -r
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and __fish_seen_subcommand_from explain" -l tool -d 'A tool name (shorthand for --operation tool:call --target TOOL)' -r
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and __fish_seen_subcommand_from explain" -l operation -d 'An operation, e.g. resource:read, prompt:get, resources:list, custom:<method>' -r
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and __fish_seen_subcommand_from explain" -l target -d 'The target: a name or URI (for list operations: an item, to ask whether it is shown)' -r
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and __fish_seen_subcommand_from explain" -l target-kind -d 'The target kind: tool, resource, resourceTemplate, prompt, server' -r
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and __fish_seen_subcommand_from explain" -l format -d 'Output format' -r -f -a "human\t''
json\t''"
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and __fish_seen_subcommand_from explain" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and __fish_seen_subcommand_from explain" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and __fish_seen_subcommand_from explain" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and __fish_seen_subcommand_from test" -l format -d 'Output format' -r -f -a "human\t''
json\t''"
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and __fish_seen_subcommand_from test" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and __fish_seen_subcommand_from test" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and __fish_seen_subcommand_from test" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and __fish_seen_subcommand_from help" -f -a "check" -d 'Validate the config: every finding with a code, a location and help'
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and __fish_seen_subcommand_from help" -f -a "explain" -d 'Explain the decision for one request: the deciding rule, rules that lost, near misses'
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and __fish_seen_subcommand_from help" -f -a "test" -d 'Run policy test cases (default: policy-tests.json beside the config)'
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fentaris -n "__fish_fentaris_using_subcommand serve" -l listen -d 'Listen address for MCP clients (default: `listen` in the config, 127.0.0.1:8765)' -r
complete -c fentaris -n "__fish_fentaris_using_subcommand serve" -l user -d 'The user the stdio client acts as' -r
complete -c fentaris -n "__fish_fentaris_using_subcommand serve" -l admin-listen -d 'Listen address of the admin endpoints /readyz and /metrics (default: `adminListen` in the config, 127.0.0.1:8766; when that default is taken, they are left out)' -r
complete -c fentaris -n "__fish_fentaris_using_subcommand serve" -l threads -d 'Worker threads (default: one per CPU, less one left to the upstreams and the audit writer; at least 1)' -r
complete -c fentaris -n "__fish_fentaris_using_subcommand serve" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand serve" -l stdio -d 'Serve one client over stdin/stdout instead of HTTP (logs go to stderr)'
complete -c fentaris -n "__fish_fentaris_using_subcommand serve" -l watch -d 'Reload when the config or the vault changes (SIGHUP always reloads)'
complete -c fentaris -n "__fish_fentaris_using_subcommand serve" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_using_subcommand serve" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand auth; and not __fish_seen_subcommand_from api-key whoami help" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand auth; and not __fish_seen_subcommand_from api-key whoami help" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_using_subcommand auth; and not __fish_seen_subcommand_from api-key whoami help" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand auth; and not __fish_seen_subcommand_from api-key whoami help" -f -a "api-key" -d 'Manage client API keys'
complete -c fentaris -n "__fish_fentaris_using_subcommand auth; and not __fish_seen_subcommand_from api-key whoami help" -f -a "whoami" -d 'Say which user and key id a key is (the key is read from stdin, never argv)'
complete -c fentaris -n "__fish_fentaris_using_subcommand auth; and not __fish_seen_subcommand_from api-key whoami help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fentaris -n "__fish_fentaris_using_subcommand auth; and __fish_seen_subcommand_from api-key" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand auth; and __fish_seen_subcommand_from api-key" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_using_subcommand auth; and __fish_seen_subcommand_from api-key" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand auth; and __fish_seen_subcommand_from api-key" -f -a "add" -d 'Add a key for USER: generated (printed once) or read from stdin'
complete -c fentaris -n "__fish_fentaris_using_subcommand auth; and __fish_seen_subcommand_from api-key" -f -a "rotate" -d 'Issue a new key for USER and expire the old one after an overlap (the new key is printed once)'
complete -c fentaris -n "__fish_fentaris_using_subcommand auth; and __fish_seen_subcommand_from api-key" -f -a "list" -d 'List keys with their age and last use (never the keys themselves)'
complete -c fentaris -n "__fish_fentaris_using_subcommand auth; and __fish_seen_subcommand_from api-key" -f -a "revoke" -d 'Revoke a key'
complete -c fentaris -n "__fish_fentaris_using_subcommand auth; and __fish_seen_subcommand_from api-key" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fentaris -n "__fish_fentaris_using_subcommand auth; and __fish_seen_subcommand_from whoami" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand auth; and __fish_seen_subcommand_from whoami" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_using_subcommand auth; and __fish_seen_subcommand_from whoami" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand auth; and __fish_seen_subcommand_from help" -f -a "api-key" -d 'Manage client API keys'
complete -c fentaris -n "__fish_fentaris_using_subcommand auth; and __fish_seen_subcommand_from help" -f -a "whoami" -d 'Say which user and key id a key is (the key is read from stdin, never argv)'
complete -c fentaris -n "__fish_fentaris_using_subcommand auth; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fentaris -n "__fish_fentaris_using_subcommand credentials; and not __fish_seen_subcommand_from set list remove help" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand credentials; and not __fish_seen_subcommand_from set list remove help" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_using_subcommand credentials; and not __fish_seen_subcommand_from set list remove help" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand credentials; and not __fish_seen_subcommand_from set list remove help" -f -a "set" -d 'Store a secret (hidden prompt on a terminal, or --value-stdin)'
complete -c fentaris -n "__fish_fentaris_using_subcommand credentials; and not __fish_seen_subcommand_from set list remove help" -f -a "list" -d 'List entry names and dates (never values)'
complete -c fentaris -n "__fish_fentaris_using_subcommand credentials; and not __fish_seen_subcommand_from set list remove help" -f -a "remove" -d 'Remove an entry'
complete -c fentaris -n "__fish_fentaris_using_subcommand credentials; and not __fish_seen_subcommand_from set list remove help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fentaris -n "__fish_fentaris_using_subcommand credentials; and __fish_seen_subcommand_from set" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand credentials; and __fish_seen_subcommand_from set" -l value-stdin -d 'Read the value from stdin'
complete -c fentaris -n "__fish_fentaris_using_subcommand credentials; and __fish_seen_subcommand_from set" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_using_subcommand credentials; and __fish_seen_subcommand_from set" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand credentials; and __fish_seen_subcommand_from list" -l format -r -f -a "table\t''
json\t''"
complete -c fentaris -n "__fish_fentaris_using_subcommand credentials; and __fish_seen_subcommand_from list" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand credentials; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_using_subcommand credentials; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand credentials; and __fish_seen_subcommand_from remove" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand credentials; and __fish_seen_subcommand_from remove" -l yes -d 'Do not ask for confirmation'
complete -c fentaris -n "__fish_fentaris_using_subcommand credentials; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_using_subcommand credentials; and __fish_seen_subcommand_from remove" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand credentials; and __fish_seen_subcommand_from help" -f -a "set" -d 'Store a secret (hidden prompt on a terminal, or --value-stdin)'
complete -c fentaris -n "__fish_fentaris_using_subcommand credentials; and __fish_seen_subcommand_from help" -f -a "list" -d 'List entry names and dates (never values)'
complete -c fentaris -n "__fish_fentaris_using_subcommand credentials; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Remove an entry'
complete -c fentaris -n "__fish_fentaris_using_subcommand credentials; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and not __fish_seen_subcommand_from status rekey trust protect recipients help" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and not __fish_seen_subcommand_from status rekey trust protect recipients help" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and not __fish_seen_subcommand_from status rekey trust protect recipients help" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and not __fish_seen_subcommand_from status rekey trust protect recipients help" -f -a "status" -d 'Path, id, recipients, counts, key source, pin, and whether the MAC verified'
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and not __fish_seen_subcommand_from status rekey trust protect recipients help" -f -a "rekey" -d 'New data key: every value re-sealed, read back and verified before the file is replaced'
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and not __fish_seen_subcommand_from status rekey trust protect recipients help" -f -a "trust" -d 'Accept a vault whose data key changed or whose generation went back'
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and not __fish_seen_subcommand_from status rekey trust protect recipients help" -f -a "protect" -d 'Protect the key file with a passphrase (argon2id; from FENTARIS_PASSPHRASE or a prompt)'
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and not __fish_seen_subcommand_from status rekey trust protect recipients help" -f -a "recipients" -d 'List, add or remove recipients (age public keys that can open the vault)'
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and not __fish_seen_subcommand_from status rekey trust protect recipients help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and __fish_seen_subcommand_from status" -l format -r -f -a "table\t''
json\t''"
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and __fish_seen_subcommand_from status" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and __fish_seen_subcommand_from rekey" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and __fish_seen_subcommand_from rekey" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and __fish_seen_subcommand_from rekey" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and __fish_seen_subcommand_from trust" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and __fish_seen_subcommand_from trust" -l yes -d 'Do not ask for confirmation'
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and __fish_seen_subcommand_from trust" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and __fish_seen_subcommand_from trust" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and __fish_seen_subcommand_from protect" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and __fish_seen_subcommand_from protect" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and __fish_seen_subcommand_from protect" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and __fish_seen_subcommand_from recipients" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and __fish_seen_subcommand_from recipients" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and __fish_seen_subcommand_from recipients" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and __fish_seen_subcommand_from recipients" -f -a "list"
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and __fish_seen_subcommand_from recipients" -f -a "add" -d 'Add a recipient: LABEL and an age public key (age1…)'
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and __fish_seen_subcommand_from recipients" -f -a "remove" -d 'Remove a recipient by label'
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and __fish_seen_subcommand_from recipients" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and __fish_seen_subcommand_from help" -f -a "status" -d 'Path, id, recipients, counts, key source, pin, and whether the MAC verified'
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and __fish_seen_subcommand_from help" -f -a "rekey" -d 'New data key: every value re-sealed, read back and verified before the file is replaced'
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and __fish_seen_subcommand_from help" -f -a "trust" -d 'Accept a vault whose data key changed or whose generation went back'
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and __fish_seen_subcommand_from help" -f -a "protect" -d 'Protect the key file with a passphrase (argon2id; from FENTARIS_PASSPHRASE or a prompt)'
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and __fish_seen_subcommand_from help" -f -a "recipients" -d 'List, add or remove recipients (age public keys that can open the vault)'
complete -c fentaris -n "__fish_fentaris_using_subcommand vault; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and not __fish_seen_subcommand_from tail summary verify help" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and not __fish_seen_subcommand_from tail summary verify help" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and not __fish_seen_subcommand_from tail summary verify help" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and not __fish_seen_subcommand_from tail summary verify help" -f -a "tail" -d 'Show audit records (oldest first); -f follows new ones, across rotation'
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and not __fish_seen_subcommand_from tail summary verify help" -f -a "summary" -d 'Count requests and denials by subject, server and target over a window'
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and not __fish_seen_subcommand_from tail summary verify help" -f -a "verify" -d 'Check the tamper-evident chain of the audit files, and compare their end with the sealed checkpoint `serve` keeps beside the config (a cut-off tail is reported)'
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and not __fish_seen_subcommand_from tail summary verify help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and __fish_seen_subcommand_from tail" -l since -d 'Only records at or after this time: a duration ago (`1h`, `30m`) or RFC 3339' -r
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and __fish_seen_subcommand_from tail" -l user -d 'Only records of this user' -r
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and __fish_seen_subcommand_from tail" -l server -d 'Only records about this server' -r
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and __fish_seen_subcommand_from tail" -l tenant -d 'Only records of this tenant' -r
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and __fish_seen_subcommand_from tail" -l file -d 'The audit file (default: `audit.path` of the config, with its rotated files)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and __fish_seen_subcommand_from tail" -s n -l lines -d 'How many records to show (the last N that match)' -r
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and __fish_seen_subcommand_from tail" -l decision -d 'Only requests with this decision' -r -f -a "allow\t''
deny\t''"
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and __fish_seen_subcommand_from tail" -l tool -d 'Only tool calls whose tool matches this glob (`create_*`)' -r
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and __fish_seen_subcommand_from tail" -l tag -d 'Only records with this tag (repeatable)' -r
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and __fish_seen_subcommand_from tail" -l event -d 'Only records of this event (`request`, `auth.failed`, `session.open`, ...)' -r
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and __fish_seen_subcommand_from tail" -l format -d '`table` for people, `json` (one object per line), `raw` (the lines as stored)' -r -f -a "table\t''
json\t''
raw\t''"
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and __fish_seen_subcommand_from tail" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and __fish_seen_subcommand_from tail" -s f -l follow -d 'Keep printing new records as they are written'
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and __fish_seen_subcommand_from tail" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and __fish_seen_subcommand_from tail" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and __fish_seen_subcommand_from summary" -l since -d 'Only records at or after this time: a duration ago (`1h`, `30m`) or RFC 3339' -r
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and __fish_seen_subcommand_from summary" -l user -d 'Only records of this user' -r
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and __fish_seen_subcommand_from summary" -l server -d 'Only records about this server' -r
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and __fish_seen_subcommand_from summary" -l tenant -d 'Only records of this tenant' -r
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and __fish_seen_subcommand_from summary" -l file -d 'The audit file (default: `audit.path` of the config, with its rotated files)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and __fish_seen_subcommand_from summary" -l format -d '`table` for people, `json` for scripts (the window is --since, default 24h)' -r -f -a "table\t''
json\t''"
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and __fish_seen_subcommand_from summary" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and __fish_seen_subcommand_from summary" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and __fish_seen_subcommand_from summary" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and __fish_seen_subcommand_from verify" -l format -d '`table` (human) or `json`' -r -f -a "table\t''
json\t''"
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and __fish_seen_subcommand_from verify" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and __fish_seen_subcommand_from verify" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and __fish_seen_subcommand_from verify" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and __fish_seen_subcommand_from help" -f -a "tail" -d 'Show audit records (oldest first); -f follows new ones, across rotation'
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and __fish_seen_subcommand_from help" -f -a "summary" -d 'Count requests and denials by subject, server and target over a window'
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and __fish_seen_subcommand_from help" -f -a "verify" -d 'Check the tamper-evident chain of the audit files, and compare their end with the sealed checkpoint `serve` keeps beside the config (a cut-off tail is reported)'
complete -c fentaris -n "__fish_fentaris_using_subcommand logs; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fentaris -n "__fish_fentaris_using_subcommand tools; and not __fish_seen_subcommand_from list lock diff help" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand tools; and not __fish_seen_subcommand_from list lock diff help" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_using_subcommand tools; and not __fish_seen_subcommand_from list lock diff help" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand tools; and not __fish_seen_subcommand_from list lock diff help" -f -a "list" -d 'List each server\'s tools, prompts, resources and resource templates (starts the upstreams)'
complete -c fentaris -n "__fish_fentaris_using_subcommand tools; and not __fish_seen_subcommand_from list lock diff help" -f -a "lock" -d 'Pin every tool and prompt definition in .fentaris/tools.lock.json (beside config.json)'
complete -c fentaris -n "__fish_fentaris_using_subcommand tools; and not __fish_seen_subcommand_from list lock diff help" -f -a "diff" -d 'Show tools and prompts added, removed or changed since the lock (exit 1 on drift)'
complete -c fentaris -n "__fish_fentaris_using_subcommand tools; and not __fish_seen_subcommand_from list lock diff help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fentaris -n "__fish_fentaris_using_subcommand tools; and __fish_seen_subcommand_from list" -l server -d 'Only this server' -r
complete -c fentaris -n "__fish_fentaris_using_subcommand tools; and __fish_seen_subcommand_from list" -l user -d 'Show the policy decision for this user on every row (and use their credentials)' -r
complete -c fentaris -n "__fish_fentaris_using_subcommand tools; and __fish_seen_subcommand_from list" -l format -r -f -a "table\t''
json\t''"
complete -c fentaris -n "__fish_fentaris_using_subcommand tools; and __fish_seen_subcommand_from list" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand tools; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_using_subcommand tools; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand tools; and __fish_seen_subcommand_from lock" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand tools; and __fish_seen_subcommand_from lock" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_using_subcommand tools; and __fish_seen_subcommand_from lock" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand tools; and __fish_seen_subcommand_from diff" -l format -r -f -a "table\t''
json\t''"
complete -c fentaris -n "__fish_fentaris_using_subcommand tools; and __fish_seen_subcommand_from diff" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand tools; and __fish_seen_subcommand_from diff" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_using_subcommand tools; and __fish_seen_subcommand_from diff" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand tools; and __fish_seen_subcommand_from help" -f -a "list" -d 'List each server\'s tools, prompts, resources and resource templates (starts the upstreams)'
complete -c fentaris -n "__fish_fentaris_using_subcommand tools; and __fish_seen_subcommand_from help" -f -a "lock" -d 'Pin every tool and prompt definition in .fentaris/tools.lock.json (beside config.json)'
complete -c fentaris -n "__fish_fentaris_using_subcommand tools; and __fish_seen_subcommand_from help" -f -a "diff" -d 'Show tools and prompts added, removed or changed since the lock (exit 1 on drift)'
complete -c fentaris -n "__fish_fentaris_using_subcommand tools; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fentaris -n "__fish_fentaris_using_subcommand connect" -l user -d 'The user the client acts as (required for claude-desktop, which starts `serve --stdio`)' -r
complete -c fentaris -n "__fish_fentaris_using_subcommand connect" -l name -d 'The entry\'s name in the client\'s config' -r
complete -c fentaris -n "__fish_fentaris_using_subcommand connect" -l format -r -f -a "text\t'The snippet, and where it goes'
json\t''"
complete -c fentaris -n "__fish_fentaris_using_subcommand connect" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand connect" -l write -d 'Merge the entry into the client\'s config file (other entries are kept; <file>.bak first)'
complete -c fentaris -n "__fish_fentaris_using_subcommand connect" -l yes -d 'Write without asking'
complete -c fentaris -n "__fish_fentaris_using_subcommand connect" -l embed-key -d 'Put the API key itself in the entry (read from stdin; it is then stored in plain text)'
complete -c fentaris -n "__fish_fentaris_using_subcommand connect" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fentaris -n "__fish_fentaris_using_subcommand connect" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand completions" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand completions" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_using_subcommand completions" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand doctor" -l format -r -f -a "table\t''
json\t''"
complete -c fentaris -n "__fish_fentaris_using_subcommand doctor" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand doctor" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_using_subcommand doctor" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and not __fish_seen_subcommand_from init config policy serve auth credentials vault logs tools connect completions doctor help" -f -a "init" -d 'Create .fentaris/ with a deny-by-default starter config'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and not __fish_seen_subcommand_from init config policy serve auth credentials vault logs tools connect completions doctor help" -f -a "config" -d 'Print the config\'s JSON Schema, or the resolved config'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and not __fish_seen_subcommand_from init config policy serve auth credentials vault logs tools connect completions doctor help" -f -a "policy" -d 'Check, explain and test policy'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and not __fish_seen_subcommand_from init config policy serve auth credentials vault logs tools connect completions doctor help" -f -a "serve" -d 'Run the proxy (streamable HTTP, or --stdio for one client)'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and not __fish_seen_subcommand_from init config policy serve auth credentials vault logs tools connect completions doctor help" -f -a "auth" -d 'Client API keys'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and not __fish_seen_subcommand_from init config policy serve auth credentials vault logs tools connect completions doctor help" -f -a "credentials" -d 'Upstream secrets in the vault'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and not __fish_seen_subcommand_from init config policy serve auth credentials vault logs tools connect completions doctor help" -f -a "vault" -d 'The vault: status, rekey, trust, recipients'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and not __fish_seen_subcommand_from init config policy serve auth credentials vault logs tools connect completions doctor help" -f -a "logs" -d 'Read the audit trail: tail, summary, verify'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and not __fish_seen_subcommand_from init config policy serve auth credentials vault logs tools connect completions doctor help" -f -a "tools" -d 'The upstreams\' tools, prompts and resources; pin them (lock) and show drift (diff)'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and not __fish_seen_subcommand_from init config policy serve auth credentials vault logs tools connect completions doctor help" -f -a "connect" -d 'Point an MCP client (Claude Code, Claude Desktop, Cursor, VS Code) at this Fentaris'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and not __fish_seen_subcommand_from init config policy serve auth credentials vault logs tools connect completions doctor help" -f -a "completions" -d 'Print a shell completion script'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and not __fish_seen_subcommand_from init config policy serve auth credentials vault logs tools connect completions doctor help" -f -a "doctor" -d 'Check this machine can run the config: ports, upstream commands, Node, vault key, Landlock'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and not __fish_seen_subcommand_from init config policy serve auth credentials vault logs tools connect completions doctor help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "schema" -d 'Print the JSON Schema of config.json (generated from the types)'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "show" -d 'Print the resolved config, defaults filled in (credential sources shown as references)'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and __fish_seen_subcommand_from policy" -f -a "check" -d 'Validate the config: every finding with a code, a location and help'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and __fish_seen_subcommand_from policy" -f -a "explain" -d 'Explain the decision for one request: the deciding rule, rules that lost, near misses'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and __fish_seen_subcommand_from policy" -f -a "test" -d 'Run policy test cases (default: policy-tests.json beside the config)'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and __fish_seen_subcommand_from auth" -f -a "api-key" -d 'Manage client API keys'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and __fish_seen_subcommand_from auth" -f -a "whoami" -d 'Say which user and key id a key is (the key is read from stdin, never argv)'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and __fish_seen_subcommand_from credentials" -f -a "set" -d 'Store a secret (hidden prompt on a terminal, or --value-stdin)'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and __fish_seen_subcommand_from credentials" -f -a "list" -d 'List entry names and dates (never values)'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and __fish_seen_subcommand_from credentials" -f -a "remove" -d 'Remove an entry'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and __fish_seen_subcommand_from vault" -f -a "status" -d 'Path, id, recipients, counts, key source, pin, and whether the MAC verified'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and __fish_seen_subcommand_from vault" -f -a "rekey" -d 'New data key: every value re-sealed, read back and verified before the file is replaced'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and __fish_seen_subcommand_from vault" -f -a "trust" -d 'Accept a vault whose data key changed or whose generation went back'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and __fish_seen_subcommand_from vault" -f -a "protect" -d 'Protect the key file with a passphrase (argon2id; from FENTARIS_PASSPHRASE or a prompt)'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and __fish_seen_subcommand_from vault" -f -a "recipients" -d 'List, add or remove recipients (age public keys that can open the vault)'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and __fish_seen_subcommand_from logs" -f -a "tail" -d 'Show audit records (oldest first); -f follows new ones, across rotation'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and __fish_seen_subcommand_from logs" -f -a "summary" -d 'Count requests and denials by subject, server and target over a window'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and __fish_seen_subcommand_from logs" -f -a "verify" -d 'Check the tamper-evident chain of the audit files, and compare their end with the sealed checkpoint `serve` keeps beside the config (a cut-off tail is reported)'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and __fish_seen_subcommand_from tools" -f -a "list" -d 'List each server\'s tools, prompts, resources and resource templates (starts the upstreams)'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and __fish_seen_subcommand_from tools" -f -a "lock" -d 'Pin every tool and prompt definition in .fentaris/tools.lock.json (beside config.json)'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and __fish_seen_subcommand_from tools" -f -a "diff" -d 'Show tools and prompts added, removed or changed since the lock (exit 1 on drift)'
