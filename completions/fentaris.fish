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
complete -c fentaris -n "__fish_fentaris_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c fentaris -n "__fish_fentaris_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fentaris -n "__fish_fentaris_using_subcommand init" -l dir -d 'Folder in which to create .fentaris/ (default: the working directory)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand init" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand init" -l force -d 'Overwrite an existing .fentaris/config.json'
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
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and __fish_seen_subcommand_from check" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and __fish_seen_subcommand_from explain" -l user -d 'The user (subject) making the request' -r
complete -c fentaris -n "__fish_fentaris_using_subcommand policy; and __fish_seen_subcommand_from explain" -l server -d 'The server, by its config name' -r
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
complete -c fentaris -n "__fish_fentaris_using_subcommand completions" -l config -d 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)' -r -F
complete -c fentaris -n "__fish_fentaris_using_subcommand completions" -s h -l help -d 'Print help'
complete -c fentaris -n "__fish_fentaris_using_subcommand completions" -s V -l version -d 'Print version'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and not __fish_seen_subcommand_from init config policy completions help" -f -a "init" -d 'Create .fentaris/ with a deny-by-default starter config'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and not __fish_seen_subcommand_from init config policy completions help" -f -a "config" -d 'Print the config\'s JSON Schema, or the resolved config'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and not __fish_seen_subcommand_from init config policy completions help" -f -a "policy" -d 'Check, explain and test policy'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and not __fish_seen_subcommand_from init config policy completions help" -f -a "completions" -d 'Print a shell completion script'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and not __fish_seen_subcommand_from init config policy completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "schema" -d 'Print the JSON Schema of config.json (generated from the types)'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "show" -d 'Print the resolved config, defaults filled in (credential sources shown as references)'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and __fish_seen_subcommand_from policy" -f -a "check" -d 'Validate the config: every finding with a code, a location and help'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and __fish_seen_subcommand_from policy" -f -a "explain" -d 'Explain the decision for one request: the deciding rule, rules that lost, near misses'
complete -c fentaris -n "__fish_fentaris_using_subcommand help; and __fish_seen_subcommand_from policy" -f -a "test" -d 'Run policy test cases (default: policy-tests.json beside the config)'
