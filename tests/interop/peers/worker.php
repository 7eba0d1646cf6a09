<?php
// Usage: php worker.php PORT JOBS: serves reverse/chunks/explode, exits after JOBS jobs.
$worker = new GearmanWorker();
$worker->addServer("127.0.0.1", (int)$argv[1]);
$worker->addFunction("reverse", function ($job) { return strrev($job->workload()); });
$worker->addFunction("chunks", function ($job) {
    $job->sendStatus(1, 2);
    $job->sendData("a");
    $job->sendData("b");
    return "c";
});
$worker->addFunction("explode", function ($job) {
    $job->sendException("boom");
    return "";
});
for ($done = 0; $done < (int)$argv[2]; $done++) {
    if (!$worker->work()) {
        fwrite(STDERR, "work failed: " . $worker->returnCode() . "\n");
        exit(1);
    }
}
