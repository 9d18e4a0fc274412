
use builtin;
use str;

set edit:completion:arg-completer[fentaris] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'fentaris'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'fentaris'= {
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand init 'Create .fentaris/ with a deny-by-default starter config'
            cand config 'Print the config''s JSON Schema, or the resolved config'
            cand policy 'Check, explain and test policy'
            cand completions 'Print a shell completion script'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'fentaris;init'= {
            cand --dir 'Folder in which to create .fentaris/ (default: the working directory)'
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand --force 'Overwrite an existing .fentaris/config.json'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'fentaris;config'= {
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand schema 'Print the JSON Schema of config.json (generated from the types)'
            cand show 'Print the resolved config, defaults filled in (credential sources shown as references)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'fentaris;config;schema'= {
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'fentaris;config;show'= {
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'fentaris;config;help'= {
            cand schema 'Print the JSON Schema of config.json (generated from the types)'
            cand show 'Print the resolved config, defaults filled in (credential sources shown as references)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'fentaris;config;help;schema'= {
        }
        &'fentaris;config;help;show'= {
        }
        &'fentaris;config;help;help'= {
        }
        &'fentaris;policy'= {
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand check 'Validate the config: every finding with a code, a location and help'
            cand explain 'Explain the decision for one request: the deciding rule, rules that lost, near misses'
            cand test 'Run policy test cases (default: policy-tests.json beside the config)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'fentaris;policy;check'= {
            cand --format 'Output format'
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand --deny-warnings 'Fail (exit 1) on security warnings and warnings too'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'fentaris;policy;explain'= {
            cand --user 'The user (subject) making the request'
            cand --server 'The server, by its config name'
            cand --tool 'A tool name (shorthand for --operation tool:call --target TOOL)'
            cand --operation 'An operation, e.g. resource:read, prompt:get, resources:list, custom:<method>'
            cand --target 'The target: a name or URI (for list operations: an item, to ask whether it is shown)'
            cand --target-kind 'The target kind: tool, resource, resourceTemplate, prompt, server'
            cand --format 'Output format'
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'fentaris;policy;test'= {
            cand --format 'Output format'
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'fentaris;policy;help'= {
            cand check 'Validate the config: every finding with a code, a location and help'
            cand explain 'Explain the decision for one request: the deciding rule, rules that lost, near misses'
            cand test 'Run policy test cases (default: policy-tests.json beside the config)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'fentaris;policy;help;check'= {
        }
        &'fentaris;policy;help;explain'= {
        }
        &'fentaris;policy;help;test'= {
        }
        &'fentaris;policy;help;help'= {
        }
        &'fentaris;completions'= {
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'fentaris;help'= {
            cand init 'Create .fentaris/ with a deny-by-default starter config'
            cand config 'Print the config''s JSON Schema, or the resolved config'
            cand policy 'Check, explain and test policy'
            cand completions 'Print a shell completion script'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'fentaris;help;init'= {
        }
        &'fentaris;help;config'= {
            cand schema 'Print the JSON Schema of config.json (generated from the types)'
            cand show 'Print the resolved config, defaults filled in (credential sources shown as references)'
        }
        &'fentaris;help;config;schema'= {
        }
        &'fentaris;help;config;show'= {
        }
        &'fentaris;help;policy'= {
            cand check 'Validate the config: every finding with a code, a location and help'
            cand explain 'Explain the decision for one request: the deciding rule, rules that lost, near misses'
            cand test 'Run policy test cases (default: policy-tests.json beside the config)'
        }
        &'fentaris;help;policy;check'= {
        }
        &'fentaris;help;policy;explain'= {
        }
        &'fentaris;help;policy;test'= {
        }
        &'fentaris;help;completions'= {
        }
        &'fentaris;help;help'= {
        }
    ]
    $completions[$command]
}
