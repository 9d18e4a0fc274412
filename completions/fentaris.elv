
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
            cand serve 'Run the proxy (streamable HTTP, or --stdio for one client)'
            cand auth 'Client API keys'
            cand credentials 'Upstream secrets in the vault'
            cand vault 'The vault: status, rekey, trust, recipients'
            cand logs 'Read the audit trail: tail, summary, verify'
            cand tools 'The upstreams'' tools, prompts and resources; pin them (lock) and show drift (diff)'
            cand connect 'Point an MCP client (Claude Code, Claude Desktop, Cursor, VS Code) at this Fentaris'
            cand completions 'Print a shell completion script'
            cand doctor 'Check this machine can run the config: ports, upstream commands, Node, vault key, Landlock'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'fentaris;init'= {
            cand --dir 'Folder in which to create .fentaris/ (default: the working directory)'
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand --force 'Overwrite an existing .fentaris/config.json'
            cand --no-vault 'Do not create the vault and its key now (they are created on first write)'
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
            cand --online 'Also start the upstreams and report tools and prompts that drifted from tools.lock.json (FNT104)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'fentaris;policy;explain'= {
            cand --user 'The user (subject) making the request'
            cand --server 'The server, by its config name'
            cand --request-id 'Replay the decision of a logged request (the `request` column of `fentaris logs tail`) under the current config'
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
        &'fentaris;serve'= {
            cand --listen 'Listen address for MCP clients (default: `listen` in the config, 127.0.0.1:8765)'
            cand --user 'The user the stdio client acts as'
            cand --admin-listen 'Listen address of the admin endpoints /readyz and /metrics (default: `adminListen` in the config, 127.0.0.1:8766; when that default is taken, they are left out)'
            cand --threads 'Worker threads (default: one per CPU, less one left to the upstreams and the audit writer; at least 1)'
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand --stdio 'Serve one client over stdin/stdout instead of HTTP (logs go to stderr)'
            cand --watch 'Reload when the config or the vault changes (SIGHUP always reloads)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'fentaris;auth'= {
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand api-key 'Manage client API keys'
            cand whoami 'Say which user and key id a key is (the key is read from stdin, never argv)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'fentaris;auth;api-key'= {
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand add 'Add a key for USER: generated (printed once) or read from stdin'
            cand rotate 'Issue a new key for USER and expire the old one after an overlap (the new key is printed once)'
            cand list 'List keys with their age and last use (never the keys themselves)'
            cand revoke 'Revoke a key'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'fentaris;auth;api-key;add'= {
            cand --label 'A label to recognise the key by'
            cand --expires-in 'Expire the key after this long, e.g. 90d, 12h'
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand --value-stdin 'Read the key from stdin (at least 20 characters, no whitespace)'
            cand --generate 'Generate a new fnt_… key and print it once'
            cand --new-user 'USER is not declared in the config yet, and that is intended'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'fentaris;auth;api-key;rotate'= {
            cand --overlap 'How long the old key keeps working, so clients can switch (0s: at once)'
            cand --expires-in 'Expire the new key after this long, e.g. 90d'
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'fentaris;auth;api-key;list'= {
            cand --format 'format'
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'fentaris;auth;api-key;revoke'= {
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'fentaris;auth;api-key;help'= {
            cand add 'Add a key for USER: generated (printed once) or read from stdin'
            cand rotate 'Issue a new key for USER and expire the old one after an overlap (the new key is printed once)'
            cand list 'List keys with their age and last use (never the keys themselves)'
            cand revoke 'Revoke a key'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'fentaris;auth;api-key;help;add'= {
        }
        &'fentaris;auth;api-key;help;rotate'= {
        }
        &'fentaris;auth;api-key;help;list'= {
        }
        &'fentaris;auth;api-key;help;revoke'= {
        }
        &'fentaris;auth;api-key;help;help'= {
        }
        &'fentaris;auth;whoami'= {
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'fentaris;auth;help'= {
            cand api-key 'Manage client API keys'
            cand whoami 'Say which user and key id a key is (the key is read from stdin, never argv)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'fentaris;auth;help;api-key'= {
            cand add 'Add a key for USER: generated (printed once) or read from stdin'
            cand rotate 'Issue a new key for USER and expire the old one after an overlap (the new key is printed once)'
            cand list 'List keys with their age and last use (never the keys themselves)'
            cand revoke 'Revoke a key'
        }
        &'fentaris;auth;help;api-key;add'= {
        }
        &'fentaris;auth;help;api-key;rotate'= {
        }
        &'fentaris;auth;help;api-key;list'= {
        }
        &'fentaris;auth;help;api-key;revoke'= {
        }
        &'fentaris;auth;help;whoami'= {
        }
        &'fentaris;auth;help;help'= {
        }
        &'fentaris;credentials'= {
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand set 'Store a secret (hidden prompt on a terminal, or --value-stdin)'
            cand list 'List entry names and dates (never values)'
            cand remove 'Remove an entry'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'fentaris;credentials;set'= {
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand --value-stdin 'Read the value from stdin'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'fentaris;credentials;list'= {
            cand --format 'format'
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'fentaris;credentials;remove'= {
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand --yes 'Do not ask for confirmation'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'fentaris;credentials;help'= {
            cand set 'Store a secret (hidden prompt on a terminal, or --value-stdin)'
            cand list 'List entry names and dates (never values)'
            cand remove 'Remove an entry'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'fentaris;credentials;help;set'= {
        }
        &'fentaris;credentials;help;list'= {
        }
        &'fentaris;credentials;help;remove'= {
        }
        &'fentaris;credentials;help;help'= {
        }
        &'fentaris;vault'= {
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand status 'Path, id, recipients, counts, key source, pin, and whether the MAC verified'
            cand rekey 'New data key: every value re-sealed, read back and verified before the file is replaced'
            cand trust 'Accept a vault whose data key changed or whose generation went back'
            cand protect 'Protect the key file with a passphrase (argon2id; from FENTARIS_PASSPHRASE or a prompt)'
            cand recipients 'List, add or remove recipients (age public keys that can open the vault)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'fentaris;vault;status'= {
            cand --format 'format'
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'fentaris;vault;rekey'= {
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'fentaris;vault;trust'= {
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand --yes 'Do not ask for confirmation'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'fentaris;vault;protect'= {
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'fentaris;vault;recipients'= {
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand list 'list'
            cand add 'Add a recipient: LABEL and an age public key (age1…)'
            cand remove 'Remove a recipient by label'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'fentaris;vault;recipients;list'= {
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'fentaris;vault;recipients;add'= {
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'fentaris;vault;recipients;remove'= {
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand --yes 'yes'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'fentaris;vault;recipients;help'= {
            cand list 'list'
            cand add 'Add a recipient: LABEL and an age public key (age1…)'
            cand remove 'Remove a recipient by label'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'fentaris;vault;recipients;help;list'= {
        }
        &'fentaris;vault;recipients;help;add'= {
        }
        &'fentaris;vault;recipients;help;remove'= {
        }
        &'fentaris;vault;recipients;help;help'= {
        }
        &'fentaris;vault;help'= {
            cand status 'Path, id, recipients, counts, key source, pin, and whether the MAC verified'
            cand rekey 'New data key: every value re-sealed, read back and verified before the file is replaced'
            cand trust 'Accept a vault whose data key changed or whose generation went back'
            cand protect 'Protect the key file with a passphrase (argon2id; from FENTARIS_PASSPHRASE or a prompt)'
            cand recipients 'List, add or remove recipients (age public keys that can open the vault)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'fentaris;vault;help;status'= {
        }
        &'fentaris;vault;help;rekey'= {
        }
        &'fentaris;vault;help;trust'= {
        }
        &'fentaris;vault;help;protect'= {
        }
        &'fentaris;vault;help;recipients'= {
            cand list 'list'
            cand add 'Add a recipient: LABEL and an age public key (age1…)'
            cand remove 'Remove a recipient by label'
        }
        &'fentaris;vault;help;recipients;list'= {
        }
        &'fentaris;vault;help;recipients;add'= {
        }
        &'fentaris;vault;help;recipients;remove'= {
        }
        &'fentaris;vault;help;help'= {
        }
        &'fentaris;logs'= {
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand tail 'Show audit records (oldest first); -f follows new ones, across rotation'
            cand summary 'Count requests and denials by subject, server and target over a window'
            cand verify 'Check the tamper-evident chain of the audit files, and compare their end with the sealed checkpoint `serve` keeps beside the config (a cut-off tail is reported)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'fentaris;logs;tail'= {
            cand --since 'Only records at or after this time: a duration ago (`1h`, `30m`) or RFC 3339'
            cand --user 'Only records of this user'
            cand --server 'Only records about this server'
            cand --tenant 'Only records of this tenant'
            cand --file 'The audit file (default: `audit.path` of the config, with its rotated files)'
            cand -n 'How many records to show (the last N that match)'
            cand --lines 'How many records to show (the last N that match)'
            cand --decision 'Only requests with this decision'
            cand --tool 'Only tool calls whose tool matches this glob (`create_*`)'
            cand --tag 'Only records with this tag (repeatable)'
            cand --event 'Only records of this event (`request`, `auth.failed`, `session.open`, ...)'
            cand --format '`table` for people, `json` (one object per line), `raw` (the lines as stored)'
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand -f 'Keep printing new records as they are written'
            cand --follow 'Keep printing new records as they are written'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'fentaris;logs;summary'= {
            cand --since 'Only records at or after this time: a duration ago (`1h`, `30m`) or RFC 3339'
            cand --user 'Only records of this user'
            cand --server 'Only records about this server'
            cand --tenant 'Only records of this tenant'
            cand --file 'The audit file (default: `audit.path` of the config, with its rotated files)'
            cand --format '`table` for people, `json` for scripts (the window is --since, default 24h)'
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'fentaris;logs;verify'= {
            cand --format '`table` (human) or `json`'
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'fentaris;logs;help'= {
            cand tail 'Show audit records (oldest first); -f follows new ones, across rotation'
            cand summary 'Count requests and denials by subject, server and target over a window'
            cand verify 'Check the tamper-evident chain of the audit files, and compare their end with the sealed checkpoint `serve` keeps beside the config (a cut-off tail is reported)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'fentaris;logs;help;tail'= {
        }
        &'fentaris;logs;help;summary'= {
        }
        &'fentaris;logs;help;verify'= {
        }
        &'fentaris;logs;help;help'= {
        }
        &'fentaris;tools'= {
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand list 'List each server''s tools, prompts, resources and resource templates (starts the upstreams)'
            cand lock 'Pin every tool and prompt definition in .fentaris/tools.lock.json (beside config.json)'
            cand diff 'Show tools and prompts added, removed or changed since the lock (exit 1 on drift)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'fentaris;tools;list'= {
            cand --server 'Only this server'
            cand --user 'Show the policy decision for this user on every row (and use their credentials)'
            cand --format 'format'
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'fentaris;tools;lock'= {
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'fentaris;tools;diff'= {
            cand --format 'format'
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'fentaris;tools;help'= {
            cand list 'List each server''s tools, prompts, resources and resource templates (starts the upstreams)'
            cand lock 'Pin every tool and prompt definition in .fentaris/tools.lock.json (beside config.json)'
            cand diff 'Show tools and prompts added, removed or changed since the lock (exit 1 on drift)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'fentaris;tools;help;list'= {
        }
        &'fentaris;tools;help;lock'= {
        }
        &'fentaris;tools;help;diff'= {
        }
        &'fentaris;tools;help;help'= {
        }
        &'fentaris;connect'= {
            cand --user 'The user the client acts as (required for claude-desktop, which starts `serve --stdio`)'
            cand --name 'The entry''s name in the client''s config'
            cand --format 'format'
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand --write 'Merge the entry into the client''s config file (other entries are kept; <file>.bak first)'
            cand --yes 'Write without asking'
            cand --embed-key 'Put the API key itself in the entry (read from stdin; it is then stored in plain text)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'fentaris;completions'= {
            cand --config 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'fentaris;doctor'= {
            cand --format 'format'
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
            cand serve 'Run the proxy (streamable HTTP, or --stdio for one client)'
            cand auth 'Client API keys'
            cand credentials 'Upstream secrets in the vault'
            cand vault 'The vault: status, rekey, trust, recipients'
            cand logs 'Read the audit trail: tail, summary, verify'
            cand tools 'The upstreams'' tools, prompts and resources; pin them (lock) and show drift (diff)'
            cand connect 'Point an MCP client (Claude Code, Claude Desktop, Cursor, VS Code) at this Fentaris'
            cand completions 'Print a shell completion script'
            cand doctor 'Check this machine can run the config: ports, upstream commands, Node, vault key, Landlock'
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
        &'fentaris;help;serve'= {
        }
        &'fentaris;help;auth'= {
            cand api-key 'Manage client API keys'
            cand whoami 'Say which user and key id a key is (the key is read from stdin, never argv)'
        }
        &'fentaris;help;auth;api-key'= {
            cand add 'Add a key for USER: generated (printed once) or read from stdin'
            cand rotate 'Issue a new key for USER and expire the old one after an overlap (the new key is printed once)'
            cand list 'List keys with their age and last use (never the keys themselves)'
            cand revoke 'Revoke a key'
        }
        &'fentaris;help;auth;api-key;add'= {
        }
        &'fentaris;help;auth;api-key;rotate'= {
        }
        &'fentaris;help;auth;api-key;list'= {
        }
        &'fentaris;help;auth;api-key;revoke'= {
        }
        &'fentaris;help;auth;whoami'= {
        }
        &'fentaris;help;credentials'= {
            cand set 'Store a secret (hidden prompt on a terminal, or --value-stdin)'
            cand list 'List entry names and dates (never values)'
            cand remove 'Remove an entry'
        }
        &'fentaris;help;credentials;set'= {
        }
        &'fentaris;help;credentials;list'= {
        }
        &'fentaris;help;credentials;remove'= {
        }
        &'fentaris;help;vault'= {
            cand status 'Path, id, recipients, counts, key source, pin, and whether the MAC verified'
            cand rekey 'New data key: every value re-sealed, read back and verified before the file is replaced'
            cand trust 'Accept a vault whose data key changed or whose generation went back'
            cand protect 'Protect the key file with a passphrase (argon2id; from FENTARIS_PASSPHRASE or a prompt)'
            cand recipients 'List, add or remove recipients (age public keys that can open the vault)'
        }
        &'fentaris;help;vault;status'= {
        }
        &'fentaris;help;vault;rekey'= {
        }
        &'fentaris;help;vault;trust'= {
        }
        &'fentaris;help;vault;protect'= {
        }
        &'fentaris;help;vault;recipients'= {
            cand list 'list'
            cand add 'Add a recipient: LABEL and an age public key (age1…)'
            cand remove 'Remove a recipient by label'
        }
        &'fentaris;help;vault;recipients;list'= {
        }
        &'fentaris;help;vault;recipients;add'= {
        }
        &'fentaris;help;vault;recipients;remove'= {
        }
        &'fentaris;help;logs'= {
            cand tail 'Show audit records (oldest first); -f follows new ones, across rotation'
            cand summary 'Count requests and denials by subject, server and target over a window'
            cand verify 'Check the tamper-evident chain of the audit files, and compare their end with the sealed checkpoint `serve` keeps beside the config (a cut-off tail is reported)'
        }
        &'fentaris;help;logs;tail'= {
        }
        &'fentaris;help;logs;summary'= {
        }
        &'fentaris;help;logs;verify'= {
        }
        &'fentaris;help;tools'= {
            cand list 'List each server''s tools, prompts, resources and resource templates (starts the upstreams)'
            cand lock 'Pin every tool and prompt definition in .fentaris/tools.lock.json (beside config.json)'
            cand diff 'Show tools and prompts added, removed or changed since the lock (exit 1 on drift)'
        }
        &'fentaris;help;tools;list'= {
        }
        &'fentaris;help;tools;lock'= {
        }
        &'fentaris;help;tools;diff'= {
        }
        &'fentaris;help;connect'= {
        }
        &'fentaris;help;completions'= {
        }
        &'fentaris;help;doctor'= {
        }
        &'fentaris;help;help'= {
        }
    ]
    $completions[$command]
}
