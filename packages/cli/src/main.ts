console.log('zeroring: CLI not yet implemented');
