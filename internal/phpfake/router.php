<?php
// An MLM Soft API2 ("online-office") emulator for PHP's built-in web server:
//
//     php -n -S 127.0.0.1:PORT router.php
//
// It is written independently of the Go fake (package mlmsofttest) and checks
// signatures the way MLM Soft's PHP integration does: PHP's own ksort,
// http_build_query, md5, $_GET and json_decode. Configuration comes from the
// environment (see phpfake.go); all state lives in one JSON file, locked with
// flock for the whole request so parallel workers (PHP_CLI_SERVER_WORKERS)
// see one consistent history.
declare(strict_types=1);

const BASE = '/api2/online-office/';
const FIRST_USER = 100001;
const FIRST_ACCOUNT = 700001;
const FIRST_DOCUMENT = 40001;

const ROUTES = [
    'user/create' => 'POST',
    'document/get' => 'GET',
    'user/exists' => 'GET',
    'user/check-auth' => 'GET',
    'account/volume-change' => 'POST',
];

set_error_handler(function (int $no, string $msg, string $file, int $line): bool {
    throw new ErrorException($msg, 0, $no, $file, $line);
});

function cfg(string $name, string $default): string
{
    $v = getenv($name);
    return ($v === false || $v === '') ? $default : $v;
}

function answer(int $status, $value): void
{
    http_response_code($status);
    header('Content-Type: application/json; charset=utf-8');
    echo json_encode($value, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_THROW_ON_ERROR);
}

function envelope(bool $success, $payload, string $message, array $errors): array
{
    return [
        'errorCode' => 0,
        'errorMessage' => '',
        'errorExtended' => null,
        'primary' => ['success' => $success, 'payload' => $payload, 'message' => $message, 'errors' => $errors],
        'secondary' => [],
        'locale' => 'en_US',
    ];
}

function ok($payload): array
{
    return envelope(true, $payload, '', []);
}

// fail is a business refusal: HTTP 200, primary.success false.
function fail(string $msg): array
{
    return envelope(false, [], $msg, [['message' => $msg]]);
}

// requestError is a refusal of the request itself; errorCode is the HTTP status.
function requestError(int $code, string $msg): array
{
    return ['errorCode' => $code, 'errorMessage' => $msg, 'primary' => null];
}

// withState runs $fn on the state under an exclusive lock and saves it.
function withState(callable $fn)
{
    $fh = fopen(cfg('PHPFAKE_STATE', sys_get_temp_dir() . '/phpfake-state.json'), 'c+');
    flock($fh, LOCK_EX);
    try {
        $raw = stream_get_contents($fh);
        $state = $raw === '' ? initialState() : json_decode($raw, true, 512, JSON_THROW_ON_ERROR);
        $out = $fn($state);
        ftruncate($fh, 0);
        rewind($fh);
        fwrite($fh, json_encode($state, JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR));
        fflush($fh);
        return $out;
    } finally {
        flock($fh, LOCK_UN);
        fclose($fh);
    }
}

function initialState(): array
{
    return [
        'nextUser' => FIRST_USER + 1,
        'nextAccount' => FIRST_ACCOUNT + 1,
        'nextDocument' => FIRST_DOCUMENT,
        'seq' => 0,
        'users' => [[
            'login' => cfg('PHPFAKE_ROOT_LOGIN', 'root@example.com'),
            'password' => cfg('PHPFAKE_ROOT_PASSWORD', 'root-password'),
            'userId' => FIRST_USER,
            'accountId' => FIRST_ACCOUNT,
            'sponsorAccountId' => 0,
            'title' => 'Root',
        ]],
        'documents' => [],
        'ledger' => [],
        'creates' => [],
    ];
}

// publicState is the state without passwords, for GET /_state.
function publicState(array $s): array
{
    $accounts = [];
    foreach ($s['users'] as $u) {
        unset($u['password']);
        $accounts[] = $u;
    }
    $docs = [];
    foreach ($s['documents'] as $d) {
        $docs[] = ['id' => $d['id'], 'entity' => $d['entity'], 'action' => $d['action'], 'result' => $d['result']];
    }
    return ['accounts' => $accounts, 'ledger' => $s['ledger'], 'documents' => $docs, 'creates' => (object)$s['creates']];
}

function findUser(array $s, string $login): ?array
{
    foreach ($s['users'] as $u) {
        if (strtolower($u['login']) === strtolower($login)) {
            return $u;
        }
    }
    return null;
}

function findAccount(array $s, int $id): ?array
{
    foreach ($s['users'] as $u) {
        if ($u['accountId'] === $id) {
            return $u;
        }
    }
    return null;
}

function pendingLogin(array $s, string $login): bool
{
    foreach ($s['documents'] as $d) {
        if ($d['create'] !== null && strtolower($d['create']['login']) === strtolower($login)) {
            return true;
        }
    }
    return false;
}

function authPayload(array $u): array
{
    return ['auth' => [
        'login' => $u['login'],
        'user' => ['id' => $u['userId'], 'account' => ['id' => $u['accountId'], 'title' => $u['title']]],
    ]];
}

// processDue gives a result, in id order, to every document whose delay has passed.
function processDue(array &$s): void
{
    $now = microtime(true);
    foreach ($s['documents'] as &$d) {
        if ($d['result'] !== null || $d['due'] > $now) {
            continue;
        }
        $c = $d['create'];
        $u = [
            'login' => $c['login'],
            'password' => $c['password'],
            'userId' => $s['nextUser']++,
            'accountId' => $s['nextAccount']++,
            'sponsorAccountId' => $c['sponsor'],
            'title' => $c['title'],
        ];
        $s['users'][] = $u;
        $d['create'] = null; // the password is not kept twice
        $d['result'] = ok(authPayload($u));
    }
    unset($d);
}

// str reads a scalar parameter as a string, or null when absent or not a scalar.
function str(array $p, string $key): ?string
{
    $v = $p[$key] ?? null;
    if (is_string($v)) {
        return $v;
    }
    if (is_int($v)) {
        return (string)$v;
    }
    return null;
}

// id reads an integer id given as a JSON integer or a decimal string.
function id(array $p, string $key): ?int
{
    $v = str($p, $key);
    if ($v === null || !preg_match('/^-?[0-9]{1,18}$/', $v)) {
        return null;
    }
    return (int)$v;
}

// memberLogin checks login and type; it returns [login, null] or [null, message].
function memberLogin(array $p): array
{
    $login = str($p, 'login');
    if ($login === null || $login === '') {
        return [null, 'Field login is required'];
    }
    $type = str($p, 'type');
    if ($type === null || $type === '') {
        return [null, 'Field type is required'];
    }
    if ($type !== 'member') {
        return [null, 'Unknown user type'];
    }
    return [$login, null];
}

// topLevelLiteral returns the raw text of the value of $key in the JSON object
// $json (the last one, as json_decode keeps the last of duplicate keys).
// $json must already be known to be valid JSON.
function topLevelLiteral(string $json, string $key): ?string
{
    preg_match_all('/"(?:[^"\\\\]|\\\\.)*"|[{}\[\]:,]|[^\s"{}\[\]:,]+/', $json, $m);
    $t = $m[0];
    $depth = 0;
    $lit = null;
    foreach ($t as $i => $tok) {
        if ($tok === '{' || $tok === '[') {
            $depth++;
        } elseif ($tok === '}' || $tok === ']') {
            $depth--;
        } elseif ($depth === 1 && $tok[0] === '"' && ($t[$i + 1] ?? '') === ':' && json_decode($tok) === $key) {
            $lit = $t[$i + 2] ?? null;
        }
    }
    return $lit;
}

function userCreate(array &$s, array $p): array
{
    [$login, $msg] = memberLogin($p);
    if ($msg !== null) {
        return fail($msg);
    }
    $password = str($p, 'password');
    if ($password === null || $password === '') {
        return fail('Field password is required');
    }
    if (!array_key_exists('sponsorId', $p)) {
        return fail('Field sponsorId is required');
    }
    $sponsor = id($p, 'sponsorId');
    if ($sponsor === null || findAccount($s, $sponsor) === null) {
        return fail('Sponsor not found');
    }
    $profile = $p['profile'] ?? [];
    if (!is_array($profile)) {
        return fail('Field profile must be an object');
    }
    $title = trim(str($profile, 'firstname') . ' ' . str($profile, 'lastname'));
    if (findUser($s, $login) !== null || pendingLogin($s, $login)) {
        return fail('User with this login already exists');
    }
    $key = strtolower($login);
    $s['creates'][$key] = ($s['creates'][$key] ?? 0) + 1;
    $id = $s['nextDocument']++;
    $s['documents'][] = [
        'id' => $id,
        'entity' => 'user',
        'action' => 'create',
        'due' => microtime(true) + ((int)cfg('PHPFAKE_DOCUMENT_DELAY_US', '0')) / 1e6,
        'create' => ['login' => $login, 'password' => $password, 'sponsor' => $sponsor, 'title' => $title === '' ? $login : $title],
        'result' => null,
    ];
    return ok(['queueRequest' => true, 'documentId' => $id]);
}

function documentGet(array &$s, array $p): array
{
    $id = id($p, 'id');
    foreach ($s['documents'] as $d) {
        if ($d['id'] === $id) {
            return ok(['document' => [
                'id' => $d['id'],
                'context' => ['entity' => $d['entity'], 'action' => $d['action']],
                'result' => $d['result'],
            ]]);
        }
    }
    return fail('Document not found');
}

function userExists(array &$s, array $p): array
{
    [$login, $msg] = memberLogin($p);
    if ($msg !== null) {
        return fail($msg);
    }
    $u = findUser($s, $login);
    if ($u === null) {
        return ok(['exist' => false]);
    }
    return ok(['exist' => true, 'auth' => ['user' => ['id' => $u['userId'], 'account' => ['id' => $u['accountId']]]]]);
}

function checkAuth(array &$s, array $p): array
{
    [$login, $msg] = memberLogin($p);
    if ($msg !== null) {
        return fail($msg);
    }
    $password = str($p, 'password');
    if ($password === null || $password === '') {
        return fail('Field password is required');
    }
    $u = findUser($s, $login);
    if ($u === null || !hash_equals($u['password'], $password)) {
        return fail('Invalid login or password');
    }
    return ok(authPayload($u));
}

function volumeChange(array &$s, array $p, string $body): array
{
    if (!array_key_exists('accountId', $p)) {
        return fail('Field accountId is required');
    }
    $account = id($p, 'accountId');
    if ($account === null || findAccount($s, $account) === null) {
        return fail('Account not found');
    }
    if (!array_key_exists('pointsAmount', $p)) {
        return fail('Field pointsAmount is required');
    }
    if (!is_int($p['pointsAmount']) && !is_float($p['pointsAmount'])) {
        return fail('Field pointsAmount must be a number');
    }
    $orderId = $p['orderId'] ?? null;
    if (!is_string($orderId) || $orderId === '') {
        return fail('Field orderId is required (a string)');
    }
    $alias = str($p, 'volumePropertyAlias');
    if ($alias === null || $alias === '') {
        return fail('Field volumePropertyAlias is required');
    }
    $entry = [
        'seq' => ++$s['seq'],
        'accountId' => $account,
        'alias' => $alias,
        'amount' => topLevelLiteral($body, 'pointsAmount'), // the literal sent, never a float
        'orderId' => $orderId,
    ];
    $s['ledger'][] = $entry;
    return ok([
        'accountId' => $account,
        'volumePropertyAlias' => $alias,
        'pointsAmount' => $p['pointsAmount'],
        'orderId' => $orderId,
    ]);
}

function serve(): void
{
    $path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH) ?: '/';
    if ($path === '/_state') {
        answer(200, withState(fn(array &$s) => publicState($s)));
        return;
    }
    $endpoint = str_starts_with($path, BASE) ? substr($path, strlen(BASE)) : null;
    if ($endpoint === null || !isset(ROUTES[$endpoint])) {
        answer(404, requestError(404, 'Not found'));
        return;
    }
    $method = $_SERVER['REQUEST_METHOD'];
    if ($method !== ROUTES[$endpoint]) {
        header('Allow: ' . ROUTES[$endpoint]);
        answer(405, requestError(405, 'Method not allowed'));
        return;
    }

    // The signature, as MLM Soft's PHP integration computes it.
    $body = '';
    if ($method === 'GET') {
        $params = $_GET;
    } else {
        $body = file_get_contents('php://input');
        $params = trim($body) === '' ? [] : json_decode($body, true);
        if (!is_array($params)) {
            answer(400, requestError(400, 'Invalid JSON body'));
            return;
        }
    }
    ksort($params);
    $want = md5(http_build_query($params) . cfg('PHPFAKE_TOKEN', 'test-token'));
    $appOK = hash_equals(cfg('PHPFAKE_APP_ID', '1'), (string)($_SERVER['HTTP_APP_ID'] ?? ''));
    if (!$appOK || !hash_equals($want, (string)($_SERVER['HTTP_SECURITY_KEY'] ?? ''))) {
        answer(403, requestError(403, 'Security key is invalid'));
        return;
    }

    $result = withState(function (array &$s) use ($endpoint, $params, $body) {
        processDue($s);
        switch ($endpoint) {
            case 'user/create':
                return userCreate($s, $params);
            case 'document/get':
                return documentGet($s, $params);
            case 'user/exists':
                return userExists($s, $params);
            case 'user/check-auth':
                return checkAuth($s, $params);
            default:
                return volumeChange($s, $params, $body);
        }
    });
    answer(200, $result);
}

try {
    serve();
} catch (Throwable $e) {
    error_log('phpfake: ' . $e);
    if (!headers_sent()) {
        answer(500, requestError(500, 'Internal error'));
    }
}
