
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'fentaris' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'fentaris'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'fentaris' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('init', 'init', [CompletionResultType]::ParameterValue, 'Create .fentaris/ with a deny-by-default starter config')
            [CompletionResult]::new('config', 'config', [CompletionResultType]::ParameterValue, 'Print the config''s JSON Schema, or the resolved config')
            [CompletionResult]::new('policy', 'policy', [CompletionResultType]::ParameterValue, 'Check, explain and test policy')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run the proxy (streamable HTTP, or --stdio for one client)')
            [CompletionResult]::new('auth', 'auth', [CompletionResultType]::ParameterValue, 'Client API keys')
            [CompletionResult]::new('credentials', 'credentials', [CompletionResultType]::ParameterValue, 'Upstream secrets in the vault')
            [CompletionResult]::new('vault', 'vault', [CompletionResultType]::ParameterValue, 'The vault: status, rekey, trust, recipients')
            [CompletionResult]::new('logs', 'logs', [CompletionResultType]::ParameterValue, 'Read the audit trail: tail, summary, verify')
            [CompletionResult]::new('tools', 'tools', [CompletionResultType]::ParameterValue, 'The upstreams'' tools, prompts and resources; pin them (lock) and show drift (diff)')
            [CompletionResult]::new('connect', 'connect', [CompletionResultType]::ParameterValue, 'Point an MCP client (Claude Code, Claude Desktop, Cursor, VS Code) at this Fentaris')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('doctor', 'doctor', [CompletionResultType]::ParameterValue, 'Check this machine can run the config: ports, upstream commands, Node, vault key, Landlock')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'fentaris;init' {
            [CompletionResult]::new('--dir', '--dir', [CompletionResultType]::ParameterName, 'Folder in which to create .fentaris/ (default: the working directory)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Overwrite an existing .fentaris/config.json')
            [CompletionResult]::new('--no-vault', '--no-vault', [CompletionResultType]::ParameterName, 'Do not create the vault and its key now (they are created on first write)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'fentaris;config' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('schema', 'schema', [CompletionResultType]::ParameterValue, 'Print the JSON Schema of config.json (generated from the types)')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Print the resolved config, defaults filled in (credential sources shown as references)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'fentaris;config;schema' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'fentaris;config;show' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'fentaris;config;help' {
            [CompletionResult]::new('schema', 'schema', [CompletionResultType]::ParameterValue, 'Print the JSON Schema of config.json (generated from the types)')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Print the resolved config, defaults filled in (credential sources shown as references)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'fentaris;config;help;schema' {
            break
        }
        'fentaris;config;help;show' {
            break
        }
        'fentaris;config;help;help' {
            break
        }
        'fentaris;policy' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Validate the config: every finding with a code, a location and help')
            [CompletionResult]::new('explain', 'explain', [CompletionResultType]::ParameterValue, 'Explain the decision for one request: the deciding rule, rules that lost, near misses')
            [CompletionResult]::new('test', 'test', [CompletionResultType]::ParameterValue, 'Run policy test cases (default: policy-tests.json beside the config)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'fentaris;policy;check' {
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('--deny-warnings', '--deny-warnings', [CompletionResultType]::ParameterName, 'Fail (exit 1) on security warnings and warnings too')
            [CompletionResult]::new('--online', '--online', [CompletionResultType]::ParameterName, 'Also start the upstreams and report tools and prompts that drifted from tools.lock.json (FNT104)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'fentaris;policy;explain' {
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'The user (subject) making the request')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'The server, by its config name')
            [CompletionResult]::new('--request-id', '--request-id', [CompletionResultType]::ParameterName, 'Replay the decision of a logged request (the `request` column of `fentaris logs tail`) under the current config')
            [CompletionResult]::new('--tool', '--tool', [CompletionResultType]::ParameterName, 'A tool name (shorthand for --operation tool:call --target TOOL)')
            [CompletionResult]::new('--operation', '--operation', [CompletionResultType]::ParameterName, 'An operation, e.g. resource:read, prompt:get, resources:list, custom:<method>')
            [CompletionResult]::new('--target', '--target', [CompletionResultType]::ParameterName, 'The target: a name or URI (for list operations: an item, to ask whether it is shown)')
            [CompletionResult]::new('--target-kind', '--target-kind', [CompletionResultType]::ParameterName, 'The target kind: tool, resource, resourceTemplate, prompt, server')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'fentaris;policy;test' {
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'fentaris;policy;help' {
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Validate the config: every finding with a code, a location and help')
            [CompletionResult]::new('explain', 'explain', [CompletionResultType]::ParameterValue, 'Explain the decision for one request: the deciding rule, rules that lost, near misses')
            [CompletionResult]::new('test', 'test', [CompletionResultType]::ParameterValue, 'Run policy test cases (default: policy-tests.json beside the config)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'fentaris;policy;help;check' {
            break
        }
        'fentaris;policy;help;explain' {
            break
        }
        'fentaris;policy;help;test' {
            break
        }
        'fentaris;policy;help;help' {
            break
        }
        'fentaris;serve' {
            [CompletionResult]::new('--listen', '--listen', [CompletionResultType]::ParameterName, 'Listen address for MCP clients (default: `listen` in the config, 127.0.0.1:8765)')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'The user the stdio client acts as')
            [CompletionResult]::new('--admin-listen', '--admin-listen', [CompletionResultType]::ParameterName, 'Listen address of the admin endpoints /readyz and /metrics (default: `adminListen` in the config, 127.0.0.1:8766; when that default is taken, they are left out)')
            [CompletionResult]::new('--threads', '--threads', [CompletionResultType]::ParameterName, 'Worker threads (default: one per CPU, less one left to the upstreams and the audit writer; at least 1)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('--stdio', '--stdio', [CompletionResultType]::ParameterName, 'Serve one client over stdin/stdout instead of HTTP (logs go to stderr)')
            [CompletionResult]::new('--watch', '--watch', [CompletionResultType]::ParameterName, 'Reload when the config or the vault changes (SIGHUP always reloads)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'fentaris;auth' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('api-key', 'api-key', [CompletionResultType]::ParameterValue, 'Manage client API keys')
            [CompletionResult]::new('whoami', 'whoami', [CompletionResultType]::ParameterValue, 'Say which user and key id a key is (the key is read from stdin, never argv)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'fentaris;auth;api-key' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add a key for USER: generated (printed once) or read from stdin')
            [CompletionResult]::new('rotate', 'rotate', [CompletionResultType]::ParameterValue, 'Issue a new key for USER and expire the old one after an overlap (the new key is printed once)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List keys with their age and last use (never the keys themselves)')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke a key')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'fentaris;auth;api-key;add' {
            [CompletionResult]::new('--label', '--label', [CompletionResultType]::ParameterName, 'A label to recognise the key by')
            [CompletionResult]::new('--expires-in', '--expires-in', [CompletionResultType]::ParameterName, 'Expire the key after this long, e.g. 90d, 12h')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('--value-stdin', '--value-stdin', [CompletionResultType]::ParameterName, 'Read the key from stdin (at least 20 characters, no whitespace)')
            [CompletionResult]::new('--generate', '--generate', [CompletionResultType]::ParameterName, 'Generate a new fnt_… key and print it once')
            [CompletionResult]::new('--new-user', '--new-user', [CompletionResultType]::ParameterName, 'USER is not declared in the config yet, and that is intended')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'fentaris;auth;api-key;rotate' {
            [CompletionResult]::new('--overlap', '--overlap', [CompletionResultType]::ParameterName, 'How long the old key keeps working, so clients can switch (0s: at once)')
            [CompletionResult]::new('--expires-in', '--expires-in', [CompletionResultType]::ParameterName, 'Expire the new key after this long, e.g. 90d')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'fentaris;auth;api-key;list' {
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'format')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'fentaris;auth;api-key;revoke' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'fentaris;auth;api-key;help' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add a key for USER: generated (printed once) or read from stdin')
            [CompletionResult]::new('rotate', 'rotate', [CompletionResultType]::ParameterValue, 'Issue a new key for USER and expire the old one after an overlap (the new key is printed once)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List keys with their age and last use (never the keys themselves)')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke a key')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'fentaris;auth;api-key;help;add' {
            break
        }
        'fentaris;auth;api-key;help;rotate' {
            break
        }
        'fentaris;auth;api-key;help;list' {
            break
        }
        'fentaris;auth;api-key;help;revoke' {
            break
        }
        'fentaris;auth;api-key;help;help' {
            break
        }
        'fentaris;auth;whoami' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'fentaris;auth;help' {
            [CompletionResult]::new('api-key', 'api-key', [CompletionResultType]::ParameterValue, 'Manage client API keys')
            [CompletionResult]::new('whoami', 'whoami', [CompletionResultType]::ParameterValue, 'Say which user and key id a key is (the key is read from stdin, never argv)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'fentaris;auth;help;api-key' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add a key for USER: generated (printed once) or read from stdin')
            [CompletionResult]::new('rotate', 'rotate', [CompletionResultType]::ParameterValue, 'Issue a new key for USER and expire the old one after an overlap (the new key is printed once)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List keys with their age and last use (never the keys themselves)')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke a key')
            break
        }
        'fentaris;auth;help;api-key;add' {
            break
        }
        'fentaris;auth;help;api-key;rotate' {
            break
        }
        'fentaris;auth;help;api-key;list' {
            break
        }
        'fentaris;auth;help;api-key;revoke' {
            break
        }
        'fentaris;auth;help;whoami' {
            break
        }
        'fentaris;auth;help;help' {
            break
        }
        'fentaris;credentials' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('set', 'set', [CompletionResultType]::ParameterValue, 'Store a secret (hidden prompt on a terminal, or --value-stdin)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List entry names and dates (never values)')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Remove an entry')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'fentaris;credentials;set' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('--value-stdin', '--value-stdin', [CompletionResultType]::ParameterName, 'Read the value from stdin')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'fentaris;credentials;list' {
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'format')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'fentaris;credentials;remove' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Do not ask for confirmation')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'fentaris;credentials;help' {
            [CompletionResult]::new('set', 'set', [CompletionResultType]::ParameterValue, 'Store a secret (hidden prompt on a terminal, or --value-stdin)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List entry names and dates (never values)')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Remove an entry')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'fentaris;credentials;help;set' {
            break
        }
        'fentaris;credentials;help;list' {
            break
        }
        'fentaris;credentials;help;remove' {
            break
        }
        'fentaris;credentials;help;help' {
            break
        }
        'fentaris;vault' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Path, id, recipients, counts, key source, pin, and whether the MAC verified')
            [CompletionResult]::new('rekey', 'rekey', [CompletionResultType]::ParameterValue, 'New data key: every value re-sealed, read back and verified before the file is replaced')
            [CompletionResult]::new('trust', 'trust', [CompletionResultType]::ParameterValue, 'Accept a vault whose data key changed or whose generation went back')
            [CompletionResult]::new('protect', 'protect', [CompletionResultType]::ParameterValue, 'Protect the key file with a passphrase (argon2id; from FENTARIS_PASSPHRASE or a prompt)')
            [CompletionResult]::new('recipients', 'recipients', [CompletionResultType]::ParameterValue, 'List, add or remove recipients (age public keys that can open the vault)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'fentaris;vault;status' {
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'format')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'fentaris;vault;rekey' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'fentaris;vault;trust' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Do not ask for confirmation')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'fentaris;vault;protect' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'fentaris;vault;recipients' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'list')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add a recipient: LABEL and an age public key (age1…)')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Remove a recipient by label')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'fentaris;vault;recipients;list' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'fentaris;vault;recipients;add' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'fentaris;vault;recipients;remove' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'yes')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'fentaris;vault;recipients;help' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'list')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add a recipient: LABEL and an age public key (age1…)')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Remove a recipient by label')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'fentaris;vault;recipients;help;list' {
            break
        }
        'fentaris;vault;recipients;help;add' {
            break
        }
        'fentaris;vault;recipients;help;remove' {
            break
        }
        'fentaris;vault;recipients;help;help' {
            break
        }
        'fentaris;vault;help' {
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Path, id, recipients, counts, key source, pin, and whether the MAC verified')
            [CompletionResult]::new('rekey', 'rekey', [CompletionResultType]::ParameterValue, 'New data key: every value re-sealed, read back and verified before the file is replaced')
            [CompletionResult]::new('trust', 'trust', [CompletionResultType]::ParameterValue, 'Accept a vault whose data key changed or whose generation went back')
            [CompletionResult]::new('protect', 'protect', [CompletionResultType]::ParameterValue, 'Protect the key file with a passphrase (argon2id; from FENTARIS_PASSPHRASE or a prompt)')
            [CompletionResult]::new('recipients', 'recipients', [CompletionResultType]::ParameterValue, 'List, add or remove recipients (age public keys that can open the vault)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'fentaris;vault;help;status' {
            break
        }
        'fentaris;vault;help;rekey' {
            break
        }
        'fentaris;vault;help;trust' {
            break
        }
        'fentaris;vault;help;protect' {
            break
        }
        'fentaris;vault;help;recipients' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'list')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add a recipient: LABEL and an age public key (age1…)')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Remove a recipient by label')
            break
        }
        'fentaris;vault;help;recipients;list' {
            break
        }
        'fentaris;vault;help;recipients;add' {
            break
        }
        'fentaris;vault;help;recipients;remove' {
            break
        }
        'fentaris;vault;help;help' {
            break
        }
        'fentaris;logs' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('tail', 'tail', [CompletionResultType]::ParameterValue, 'Show audit records (oldest first); -f follows new ones, across rotation')
            [CompletionResult]::new('summary', 'summary', [CompletionResultType]::ParameterValue, 'Count requests and denials by subject, server and target over a window')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Check the tamper-evident chain of the audit files, and compare their end with the sealed checkpoint `serve` keeps beside the config (a cut-off tail is reported)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'fentaris;logs;tail' {
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Only records at or after this time: a duration ago (`1h`, `30m`) or RFC 3339')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'Only records of this user')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Only records about this server')
            [CompletionResult]::new('--tenant', '--tenant', [CompletionResultType]::ParameterName, 'Only records of this tenant')
            [CompletionResult]::new('--file', '--file', [CompletionResultType]::ParameterName, 'The audit file (default: `audit.path` of the config, with its rotated files)')
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'How many records to show (the last N that match)')
            [CompletionResult]::new('--lines', '--lines', [CompletionResultType]::ParameterName, 'How many records to show (the last N that match)')
            [CompletionResult]::new('--decision', '--decision', [CompletionResultType]::ParameterName, 'Only requests with this decision')
            [CompletionResult]::new('--tool', '--tool', [CompletionResultType]::ParameterName, 'Only tool calls whose tool matches this glob (`create_*`)')
            [CompletionResult]::new('--tag', '--tag', [CompletionResultType]::ParameterName, 'Only records with this tag (repeatable)')
            [CompletionResult]::new('--event', '--event', [CompletionResultType]::ParameterName, 'Only records of this event (`request`, `auth.failed`, `session.open`, ...)')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, '`table` for people, `json` (one object per line), `raw` (the lines as stored)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('-f', '-f', [CompletionResultType]::ParameterName, 'Keep printing new records as they are written')
            [CompletionResult]::new('--follow', '--follow', [CompletionResultType]::ParameterName, 'Keep printing new records as they are written')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'fentaris;logs;summary' {
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Only records at or after this time: a duration ago (`1h`, `30m`) or RFC 3339')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'Only records of this user')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Only records about this server')
            [CompletionResult]::new('--tenant', '--tenant', [CompletionResultType]::ParameterName, 'Only records of this tenant')
            [CompletionResult]::new('--file', '--file', [CompletionResultType]::ParameterName, 'The audit file (default: `audit.path` of the config, with its rotated files)')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, '`table` for people, `json` for scripts (the window is --since, default 24h)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'fentaris;logs;verify' {
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, '`table` (human) or `json`')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'fentaris;logs;help' {
            [CompletionResult]::new('tail', 'tail', [CompletionResultType]::ParameterValue, 'Show audit records (oldest first); -f follows new ones, across rotation')
            [CompletionResult]::new('summary', 'summary', [CompletionResultType]::ParameterValue, 'Count requests and denials by subject, server and target over a window')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Check the tamper-evident chain of the audit files, and compare their end with the sealed checkpoint `serve` keeps beside the config (a cut-off tail is reported)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'fentaris;logs;help;tail' {
            break
        }
        'fentaris;logs;help;summary' {
            break
        }
        'fentaris;logs;help;verify' {
            break
        }
        'fentaris;logs;help;help' {
            break
        }
        'fentaris;tools' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List each server''s tools, prompts, resources and resource templates (starts the upstreams)')
            [CompletionResult]::new('lock', 'lock', [CompletionResultType]::ParameterValue, 'Pin every tool and prompt definition in .fentaris/tools.lock.json (beside config.json)')
            [CompletionResult]::new('diff', 'diff', [CompletionResultType]::ParameterValue, 'Show tools and prompts added, removed or changed since the lock (exit 1 on drift)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'fentaris;tools;list' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Only this server')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'Show the policy decision for this user on every row (and use their credentials)')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'format')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'fentaris;tools;lock' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'fentaris;tools;diff' {
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'format')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'fentaris;tools;help' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List each server''s tools, prompts, resources and resource templates (starts the upstreams)')
            [CompletionResult]::new('lock', 'lock', [CompletionResultType]::ParameterValue, 'Pin every tool and prompt definition in .fentaris/tools.lock.json (beside config.json)')
            [CompletionResult]::new('diff', 'diff', [CompletionResultType]::ParameterValue, 'Show tools and prompts added, removed or changed since the lock (exit 1 on drift)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'fentaris;tools;help;list' {
            break
        }
        'fentaris;tools;help;lock' {
            break
        }
        'fentaris;tools;help;diff' {
            break
        }
        'fentaris;tools;help;help' {
            break
        }
        'fentaris;connect' {
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'The user the client acts as (required for claude-desktop, which starts `serve --stdio`)')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'The entry''s name in the client''s config')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'format')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('--write', '--write', [CompletionResultType]::ParameterName, 'Merge the entry into the client''s config file (other entries are kept; <file>.bak first)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Write without asking')
            [CompletionResult]::new('--embed-key', '--embed-key', [CompletionResultType]::ParameterName, 'Put the API key itself in the entry (read from stdin; it is then stored in plain text)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'fentaris;completions' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'fentaris;doctor' {
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'format')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FENTARIS_CONFIG, else the nearest .fentaris/config.json upward)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'fentaris;help' {
            [CompletionResult]::new('init', 'init', [CompletionResultType]::ParameterValue, 'Create .fentaris/ with a deny-by-default starter config')
            [CompletionResult]::new('config', 'config', [CompletionResultType]::ParameterValue, 'Print the config''s JSON Schema, or the resolved config')
            [CompletionResult]::new('policy', 'policy', [CompletionResultType]::ParameterValue, 'Check, explain and test policy')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run the proxy (streamable HTTP, or --stdio for one client)')
            [CompletionResult]::new('auth', 'auth', [CompletionResultType]::ParameterValue, 'Client API keys')
            [CompletionResult]::new('credentials', 'credentials', [CompletionResultType]::ParameterValue, 'Upstream secrets in the vault')
            [CompletionResult]::new('vault', 'vault', [CompletionResultType]::ParameterValue, 'The vault: status, rekey, trust, recipients')
            [CompletionResult]::new('logs', 'logs', [CompletionResultType]::ParameterValue, 'Read the audit trail: tail, summary, verify')
            [CompletionResult]::new('tools', 'tools', [CompletionResultType]::ParameterValue, 'The upstreams'' tools, prompts and resources; pin them (lock) and show drift (diff)')
            [CompletionResult]::new('connect', 'connect', [CompletionResultType]::ParameterValue, 'Point an MCP client (Claude Code, Claude Desktop, Cursor, VS Code) at this Fentaris')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('doctor', 'doctor', [CompletionResultType]::ParameterValue, 'Check this machine can run the config: ports, upstream commands, Node, vault key, Landlock')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'fentaris;help;init' {
            break
        }
        'fentaris;help;config' {
            [CompletionResult]::new('schema', 'schema', [CompletionResultType]::ParameterValue, 'Print the JSON Schema of config.json (generated from the types)')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Print the resolved config, defaults filled in (credential sources shown as references)')
            break
        }
        'fentaris;help;config;schema' {
            break
        }
        'fentaris;help;config;show' {
            break
        }
        'fentaris;help;policy' {
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Validate the config: every finding with a code, a location and help')
            [CompletionResult]::new('explain', 'explain', [CompletionResultType]::ParameterValue, 'Explain the decision for one request: the deciding rule, rules that lost, near misses')
            [CompletionResult]::new('test', 'test', [CompletionResultType]::ParameterValue, 'Run policy test cases (default: policy-tests.json beside the config)')
            break
        }
        'fentaris;help;policy;check' {
            break
        }
        'fentaris;help;policy;explain' {
            break
        }
        'fentaris;help;policy;test' {
            break
        }
        'fentaris;help;serve' {
            break
        }
        'fentaris;help;auth' {
            [CompletionResult]::new('api-key', 'api-key', [CompletionResultType]::ParameterValue, 'Manage client API keys')
            [CompletionResult]::new('whoami', 'whoami', [CompletionResultType]::ParameterValue, 'Say which user and key id a key is (the key is read from stdin, never argv)')
            break
        }
        'fentaris;help;auth;api-key' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add a key for USER: generated (printed once) or read from stdin')
            [CompletionResult]::new('rotate', 'rotate', [CompletionResultType]::ParameterValue, 'Issue a new key for USER and expire the old one after an overlap (the new key is printed once)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List keys with their age and last use (never the keys themselves)')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke a key')
            break
        }
        'fentaris;help;auth;api-key;add' {
            break
        }
        'fentaris;help;auth;api-key;rotate' {
            break
        }
        'fentaris;help;auth;api-key;list' {
            break
        }
        'fentaris;help;auth;api-key;revoke' {
            break
        }
        'fentaris;help;auth;whoami' {
            break
        }
        'fentaris;help;credentials' {
            [CompletionResult]::new('set', 'set', [CompletionResultType]::ParameterValue, 'Store a secret (hidden prompt on a terminal, or --value-stdin)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List entry names and dates (never values)')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Remove an entry')
            break
        }
        'fentaris;help;credentials;set' {
            break
        }
        'fentaris;help;credentials;list' {
            break
        }
        'fentaris;help;credentials;remove' {
            break
        }
        'fentaris;help;vault' {
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Path, id, recipients, counts, key source, pin, and whether the MAC verified')
            [CompletionResult]::new('rekey', 'rekey', [CompletionResultType]::ParameterValue, 'New data key: every value re-sealed, read back and verified before the file is replaced')
            [CompletionResult]::new('trust', 'trust', [CompletionResultType]::ParameterValue, 'Accept a vault whose data key changed or whose generation went back')
            [CompletionResult]::new('protect', 'protect', [CompletionResultType]::ParameterValue, 'Protect the key file with a passphrase (argon2id; from FENTARIS_PASSPHRASE or a prompt)')
            [CompletionResult]::new('recipients', 'recipients', [CompletionResultType]::ParameterValue, 'List, add or remove recipients (age public keys that can open the vault)')
            break
        }
        'fentaris;help;vault;status' {
            break
        }
        'fentaris;help;vault;rekey' {
            break
        }
        'fentaris;help;vault;trust' {
            break
        }
        'fentaris;help;vault;protect' {
            break
        }
        'fentaris;help;vault;recipients' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'list')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add a recipient: LABEL and an age public key (age1…)')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Remove a recipient by label')
            break
        }
        'fentaris;help;vault;recipients;list' {
            break
        }
        'fentaris;help;vault;recipients;add' {
            break
        }
        'fentaris;help;vault;recipients;remove' {
            break
        }
        'fentaris;help;logs' {
            [CompletionResult]::new('tail', 'tail', [CompletionResultType]::ParameterValue, 'Show audit records (oldest first); -f follows new ones, across rotation')
            [CompletionResult]::new('summary', 'summary', [CompletionResultType]::ParameterValue, 'Count requests and denials by subject, server and target over a window')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Check the tamper-evident chain of the audit files, and compare their end with the sealed checkpoint `serve` keeps beside the config (a cut-off tail is reported)')
            break
        }
        'fentaris;help;logs;tail' {
            break
        }
        'fentaris;help;logs;summary' {
            break
        }
        'fentaris;help;logs;verify' {
            break
        }
        'fentaris;help;tools' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List each server''s tools, prompts, resources and resource templates (starts the upstreams)')
            [CompletionResult]::new('lock', 'lock', [CompletionResultType]::ParameterValue, 'Pin every tool and prompt definition in .fentaris/tools.lock.json (beside config.json)')
            [CompletionResult]::new('diff', 'diff', [CompletionResultType]::ParameterValue, 'Show tools and prompts added, removed or changed since the lock (exit 1 on drift)')
            break
        }
        'fentaris;help;tools;list' {
            break
        }
        'fentaris;help;tools;lock' {
            break
        }
        'fentaris;help;tools;diff' {
            break
        }
        'fentaris;help;connect' {
            break
        }
        'fentaris;help;completions' {
            break
        }
        'fentaris;help;doctor' {
            break
        }
        'fentaris;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
