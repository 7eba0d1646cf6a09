<?php
// Usage: php client.php PORT. Prints one line per call so the test can compare.
$client = new GearmanClient();
$client->addServer("127.0.0.1", (int)$argv[1]);
$client->setTimeout(10000);
echo "normal:", $client->doNormal("reverse", "hello"), "\n";
echo "high:", $client->doHigh("reverse", "high"), "\n";
echo "low:", $client->doLow("reverse", "low"), "\n";
echo "chunks:", $client->doNormal("chunks", "x"), "\n";
$client->doNormal("explode", "x");
echo "exception:", $client->returnCode() == GEARMAN_WORK_EXCEPTION ? "yes" : $client->returnCode(), "\n";
$handle = $client->doBackground("reverse", "background");
echo "background:", preg_match('/^H:.+:\d+$/', $handle) ? "handle" : $handle, "\n";
$status = $client->jobStatus($handle);
echo "status:", count($status), "\n";
