// Starts `kflow lsp` for .kflow files; everything else comes from the server.
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const command = vscode.workspace.getConfiguration("kflow").get("path") || "kflow";
  client = new LanguageClient(
    "kflow",
    "kflow",
    { command, args: ["lsp"] },
    { documentSelector: [{ language: "kflow" }] }
  );
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
